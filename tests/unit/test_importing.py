"""Imported features (features/importing.py, features/import_readers.py): readers, provenance,
freshness, interrupted writes, and how extract, stage 2 and predict see an imported stream."""

import os
import shutil

import h5py
import numpy as np
import pytest

from mouse_pipeline.config import load_config
from mouse_pipeline.dataset import load_video, video_files
from mouse_pipeline.errors import CacheError, ConfigError, InputError
from mouse_pipeline.features import importing
from mouse_pipeline.features.import_readers import read_features
from mouse_pipeline.features.planning import cache_table
from mouse_pipeline.features.store import cache_path, expected_attrs, read_attrs
from mouse_pipeline.features.writer import CacheWriter
from mouse_pipeline.fileio import sha256_file
from mouse_pipeline.synthetic import generate_dataset
from mouse_pipeline.video import video_fingerprint

N_FRAMES = 40
DIM = 5


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("import_videos")
    generate_dataset(root, n_videos=2, n_frames=N_FRAMES, size=32, fps=10, seed=5)
    return root


@pytest.fixture
def project(tmp_path, dataset):
    """Own copies of the videos (tests change them) and a feature folder of .npy files."""
    shutil.copytree(dataset / "videos", tmp_path / "videos")
    shutil.copytree(dataset / "labels", tmp_path / "labels")
    feats = tmp_path / "feats"
    feats.mkdir()
    rng = np.random.default_rng(0)
    for vid in ("mouse_000", "mouse_001"):
        np.save(feats / f"{vid}.npy", rng.normal(size=(N_FRAMES, DIM)))
    cfg = load_config(None, [f"data.videos={tmp_path / 'videos'}", f"data.labels={tmp_path / 'labels'}",
                             f"extract.cache={tmp_path / 'cache'}", "data.crop.mode=none"])
    return tmp_path, cfg


def run_import(cfg, feats, **kw):
    kw.setdefault("tool", "test tool")
    return importing.import_features(cfg, "ext", feats, **kw)


def statuses(summary):
    return {r.video_id: r.status for r in summary.results}


# -- readers -----------------------------------------------------------------------------

def test_readers_give_the_same_array_from_every_format(tmp_path):
    x = np.random.default_rng(1).normal(size=(7, 3))
    np.save(tmp_path / "a.npy", x)
    np.savetxt(tmp_path / "a.csv", x, delimiter=",")
    with open(tmp_path / "b.csv", "w") as fh:  # pandas' to_csv: index column, header
        fh.write(",f0,f1,f2\n" + "".join(f"{i}," + ",".join(repr(v) for v in row) + "\n"
                                         for i, row in enumerate(x.tolist())))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["group/feats"] = x
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["feats"], f["other"] = x, x[:, :1]
    want = x.astype(np.float32)
    for path, fmt, key in ((tmp_path / "a.npy", "npy", None), (tmp_path / "a.csv", "csv", None),
                           (tmp_path / "b.csv", "csv", None), (tmp_path / "a.h5", "h5", None),
                           (tmp_path / "two.h5", "h5", "feats")):
        got = read_features(path, fmt, key)
        assert got.dtype == np.float32 and np.array_equal(got, want), path
    np.save(tmp_path / "one.npy", x[:, 0])
    assert read_features(tmp_path / "one.npy", "npy").shape == (7, 1)


def test_a_csv_column_that_does_not_count_frames_is_a_feature(tmp_path):
    (tmp_path / "a.csv").write_text("frame,f\n5,1\n6,2\n")
    assert read_features(tmp_path / "a.csv", "csv").tolist() == [[5, 1], [6, 2]]


@pytest.mark.parametrize("write, fmt, match", [
    (lambda p: np.save(p, np.array([[1.0, 2.0], [np.nan, 1.0], [np.inf, 0]])), "npy", r"row 1 \(frame 1.*rows holding them: 2 of 3"),
    (lambda p: np.save(p, np.array([[1e300], [1.0]])), "npy", r"row 0 .*float32's range"),
    (lambda p: np.save(p, np.zeros((2, 2, 2))), "npy", r"shape \(2, 2, 2\).*2 dimensions"),
    (lambda p: np.save(p, np.zeros((2, 2), complex)), "npy", "complex128 where numbers"),
    (lambda p: np.save(p, np.array([[{}]], dtype=object), allow_pickle=True), "npy", "not a NumPy array of numbers"),
    (lambda p: np.save(p, np.zeros((0, 3))), "npy", "empty array"),
    (lambda p: np.save(p, np.zeros((3, 3000))), "npy", "3000 features per frame, more than the 2048"),
    (lambda p: p.write_bytes(b"garbage, not numpy"), "npy", "not a NumPy array of numbers"),
    (lambda p: p.write_text("a,b\n1,x\n"), "csv", "not a CSV of numbers.*'x'"),
    (lambda p: p.write_text("1,2\n3\n"), "csv", "not a CSV of numbers"),
    (lambda p: p.write_text("a,b\n"), "csv", "no row of numbers"),
    (lambda p: p.write_text(""), "csv", "empty CSV"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "csv", "not a text file"),
    (lambda p: p.write_bytes(b"garbage, not HDF5"), "h5", "not a readable HDF5 file"),
])
def test_reader_errors_name_the_file(tmp_path, write, fmt, match):
    path = tmp_path / f"bad.{fmt}"
    write(path)
    with pytest.raises(InputError, match=match) as err:
        read_features(path, fmt)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_h5_needs_a_dataset_name_when_several_could_be_features(tmp_path):
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"], f["b"] = np.zeros((3, 2)), np.zeros((3, 2))
    with pytest.raises(InputError, match="2 datasets.*a, b.*--h5-dataset"):
        read_features(tmp_path / "two.h5", "h5")
    with pytest.raises(InputError, match="no dataset 'c'"):
        read_features(tmp_path / "two.h5", "h5", "c")


# -- import ------------------------------------------------------------------------------

def test_import_writes_the_features_with_their_provenance(project):
    root, cfg = project
    summary = run_import(cfg, root / "feats")
    assert statuses(summary) == {"mouse_000": "imported", "mouse_001": "imported"}
    for vid in ("mouse_000", "mouse_001"):
        path = cache_path(cfg.extract.cache, "ext", vid)
        src = root / "feats" / f"{vid}.npy"
        with h5py.File(path) as f:
            assert np.array_equal(f["embeddings"][()], np.load(src).astype(np.float32))
        attrs = read_attrs(path)
        fp = video_fingerprint(root / "videos" / f"{vid}.mp4")
        assert attrs["origin"] == "import" and attrs["tool"] == "test tool"
        assert attrs["source"] == str(src) and attrs["source_sha256"] == sha256_file(src)
        assert attrs["source_format"] == "npy" and attrs["source_dataset"] == ""
        assert (attrs["video_size"], attrs["video_mtime_ns"], attrs["video_sha256"]) == (
            fp["size"], fp["mtime_ns"], fp["sha256"])
        assert (attrs["backbone"], attrs["n_frames"], attrs["dim"], attrs["fps"]) == ("ext", N_FRAMES, DIM, 10.0)
        assert attrs["created"] and attrs["video_path"] == str(root / "videos" / f"{vid}.mp4")
    rows = {r["video"]: r for r in cache_table(cfg.extract.cache, cfg)}
    assert rows["mouse_000"]["tool"] == "test tool" and rows["mouse_000"]["source"] == "mouse_000.npy"
    assert rows["mouse_000"]["status"] == "fresh"  # judged against its video, not extract settings


def test_h5_and_csv_sources(project):
    root, cfg = project
    h5dir, csvdir = root / "h5", root / "csv"
    h5dir.mkdir(), csvdir.mkdir()
    for vid in ("mouse_000", "mouse_001"):
        x = np.load(root / "feats" / f"{vid}.npy")
        with h5py.File(h5dir / f"{vid}.h5", "w") as f:
            f["features"], f["frame_times"] = x, np.arange(N_FRAMES)
        np.savetxt(csvdir / f"{vid}.csv", x, delimiter=",", header="a,b,c,d,e", comments="")
    assert set(statuses(importing.import_features(cfg, "fromh5", h5dir, "t", h5_dataset="features")).values()) == {"imported"}
    assert set(statuses(importing.import_features(cfg, "fromcsv", csvdir, "t", fmt="csv")).values()) == {"imported"}
    for name in ("fromh5", "fromcsv"):
        with h5py.File(cache_path(cfg.extract.cache, name, "mouse_001")) as f:
            np.testing.assert_allclose(f["embeddings"][()], np.load(root / "feats" / "mouse_001.npy"), rtol=1e-6)
    assert read_attrs(cache_path(cfg.extract.cache, "fromh5", "mouse_000"))["source_dataset"] == "features"
    with pytest.raises(InputError, match="2 datasets of 1 or 2 dimensions"):
        importing.import_features(cfg, "fromh5", h5dir, "t")
    # another dataset of the same file is other features: not up to date
    again = importing.import_features(cfg, "fromh5", h5dir, "t", h5_dataset="frame_times")
    assert set(statuses(again).values()) == {"imported"} and again.results[0].dim == 1


def test_unchanged_source_is_skipped_and_a_changed_one_reimported(project):
    root, cfg = project
    run_import(cfg, root / "feats")
    kept = cache_path(cfg.extract.cache, "ext", "mouse_000")
    before = kept.stat().st_mtime_ns
    assert set(statuses(run_import(cfg, root / "feats")).values()) == {"up_to_date"}
    np.save(root / "feats" / "mouse_001.npy", np.ones((N_FRAMES, DIM)))
    summary = run_import(cfg, root / "feats")
    assert statuses(summary) == {"mouse_000": "up_to_date", "mouse_001": "imported"}
    assert "source_sha256 changed" in summary.results[1].reason
    assert kept.stat().st_mtime_ns == before
    assert np.all(load_video(cfg, "ext", video_files(cfg.data.videos)[1]).features.load() == 1)
    assert set(statuses(run_import(cfg, root / "feats", overwrite=True)).values()) == {"imported"}


def test_a_changed_video_makes_the_import_stale_for_stage_2(project):
    root, cfg = project
    run_import(cfg, root / "feats")
    video = root / "videos" / "mouse_000.mp4"
    st = video.stat()
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the video changed
    with pytest.raises(CacheError, match=r"video changed since it was imported\); run `mouse-pipeline "
                                         "cache import`"):
        load_video(cfg, "ext", video_files(cfg.data.videos)[0])
    assert {r["video"]: r["status"] for r in cache_table(cfg.extract.cache)}["mouse_000"] == "stale"
    with pytest.raises(InputError, match="out of date .* for mouse_000.mp4; predict cannot compute"):
        importing.check_imported(cfg.extract.cache, ["ext"], video_files(cfg.data.videos))
    summary = run_import(cfg, root / "feats")
    assert statuses(summary)["mouse_000"] == "imported" and "video changed" in summary.results[0].reason
    importing.check_imported(cfg.extract.cache, ["ext"], video_files(cfg.data.videos))
    assert load_video(cfg, "ext", video_files(cfg.data.videos)[0]).n_frames == N_FRAMES


def test_an_interrupted_import_leaves_no_partial_file_and_resumes(project, monkeypatch):
    root, cfg = project
    calls = []
    real = CacheWriter.write

    def killed_on_second(self, batch):
        calls.append(self.path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(self, batch)

    monkeypatch.setattr(CacheWriter, "write", killed_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_import(cfg, root / "feats")
    monkeypatch.setattr(CacheWriter, "write", real)
    folder = root / "cache" / "ext"
    assert sorted(p.name for p in folder.iterdir()) == ["mouse_000.h5"]  # no temporary file, no lock
    assert statuses(run_import(cfg, root / "feats")) == {"mouse_000": "up_to_date", "mouse_001": "imported"}


def test_names_and_folders_that_cannot_be_imported_into(project):
    root, cfg = project
    with pytest.raises(ConfigError, match="backbone that extract computes"):
        importing.import_features(cfg, "resnet50v2", root / "feats", "t")
    with pytest.raises(ConfigError, match="only A-Z"):
        importing.import_features(cfg, "a/b", root / "feats", "t")
    with pytest.raises(ConfigError, match="--tool"):
        importing.import_features(cfg, "ext", root / "feats", " ")
    video = root / "videos" / "mouse_000.mp4"
    with pytest.raises(ConfigError, match="backbone that extract computes"):  # the pose stream's name
        importing.import_features(cfg, "pose", root / "feats", "t")
    attrs = expected_attrs(backbone="flow", weights="", input_size=0, crop="", dtype="float32", precision="",
                           video_path=video, fingerprint=video_fingerprint(video), fps=10.0)
    with CacheWriter(cache_path(cfg.extract.cache, "flow", "mouse_000"), 1, 1, "float32", attrs) as w:
        w.write(np.zeros((1, 1)))
    with pytest.raises(CacheError, match="holds features computed by the project"):
        importing.import_features(cfg, "flow", root / "feats", "t")


def test_a_later_import_must_match_the_stream_already_cached(project):
    root, cfg = project
    run_import(cfg, root / "feats")
    np.save(root / "feats" / "mouse_001.npy", np.zeros((N_FRAMES, DIM + 1)))
    one = cfg.replace(**{"data.videos": str(root / "videos" / "mouse_001.mp4")})
    (root / "feats" / "mouse_000.npy").unlink()
    with pytest.raises(InputError, match=r"mouse_000.h5: imported before with 5 features per frame, the "
                                         r"new files have 6"):
        run_import(one, root / "feats", overwrite=True)
    np.save(root / "feats" / "mouse_001.npy", np.zeros((N_FRAMES, DIM)))
    with pytest.raises(InputError, match="imported before from tool 'test tool', not 'other'"):
        run_import(one, root / "feats", tool="other", overwrite=True)


def test_extract_skips_an_imported_stream_and_names_others_unknown(project):
    from mouse_pipeline.features.extract import extract

    root, cfg = project
    run_import(cfg, root / "feats")
    assert importing.imported_names([cfg.extract.cache], ["ext", "resnet50v2", "nothing"]) == ["ext"]
    summary = extract(cfg.replace(**{"extract.backbones": ("ext",)}), progress=False)
    assert summary.results == []
    with pytest.raises(ConfigError, match="unknown backbone 'nothing'.*cache import --name nothing"):
        extract(cfg.replace(**{"extract.backbones": ("ext", "nothing")}), progress=False)


def test_predict_refuses_videos_without_imported_features(project):
    root, cfg = project
    run_import(cfg, root / "feats")
    files = video_files(cfg.data.videos)
    importing.check_imported(cfg.extract.cache, ["ext"], files)
    cache_path(cfg.extract.cache, "ext", "mouse_001").unlink()
    with pytest.raises(InputError, match=r"imported features 'ext': none for mouse_001.mp4; .*cache "
                                         r"import --name ext"):
        importing.check_imported(cfg.extract.cache, ["ext"], files)
