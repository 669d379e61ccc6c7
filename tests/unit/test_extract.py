"""Stage 1 engine (features/extract.py, planning.py, streaming.py) on tiny videos written
here with OpenCV.

The backbone (resnet50v2, random weights, 32 px) is built once for the module; extract's
own ``build_backbone`` is replaced by one returning it (and counting calls), except where
the real build is the point.
"""

import json
import os
import socket
import threading

import cv2
import numpy as np
import pytest
import tensorflow as tf

from mouse_pipeline import backbones
from mouse_pipeline.config import load_config
from mouse_pipeline.errors import InputError, LockError
from mouse_pipeline.features import extract as ex
from mouse_pipeline.features import streaming
from mouse_pipeline.features.store import cache_path, read_attrs, read_embeddings
from mouse_pipeline.pose import write_dlc_csv
from mouse_pipeline.video import video_fingerprint

SIZE = 32
FRAMES = {"m1": 24, "m2": 31, "m3": 40}


def write_video(path, n_frames, seed, size=64):
    """Noise plus a moving square: every frame clearly different from its neighbours."""
    rng = np.random.default_rng(seed)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    assert out.isOpened()
    for t in range(n_frames):
        img = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        x = (3 * t) % (size - 16)
        img[20:36, x:x + 16] = (40, 200 - 4 * (t % 40), 255)
        out.write(img)
    out.release()


def decode(path, crop=None):
    """Every frame as the reference sees it: BGR -> crop -> resize -> RGB."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        if crop is not None:
            x, y, w, h = crop
            img = img[y:y + h, x:x + w]
        img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        frames.append(img[..., ::-1])
    cap.release()
    return np.stack(frames)


def one_by_one(backbone, frames):
    """The backbone's model applied to each frame on its own (a batch of one)."""
    return np.concatenate([np.asarray(backbone.single(f[None].astype(np.float32))) for f in frames])


@pytest.fixture(scope="module")
def backbone():
    built = backbones.build_backbone("resnet50v2", "random", SIZE)
    # the model itself, one frame at a time, compiled once (eager calls are 15x slower)
    built.single = tf.function(lambda x: built.model(x, training=False),
                               input_signature=[tf.TensorSpec((1, SIZE, SIZE, 3), tf.float32)])
    return built


@pytest.fixture
def built(monkeypatch, backbone):
    """Replace the build by the module's backbone; the list records every build."""
    calls = []

    def fake_build(name, weights, input_size=None, precision="float32", jit_compile=False):
        calls.append((name, weights, input_size, precision))
        return backbone

    monkeypatch.setattr(backbones, "build_backbone", fake_build)
    return calls


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for seed, (name, n) in enumerate(FRAMES.items()):
        write_video(folder / f"{name}.avi", n, seed)
    return folder


def config(tmp_path, videos, *overrides):
    return load_config(None, [f"data.videos={videos}", f"extract.cache={tmp_path / 'cache'}",
                              "extract.backbones=[resnet50v2]", "extract.weights=random",
                              f"extract.input_size={SIZE}", "extract.batch_size=8",
                              "extract.queue_batches=2", "extract.precision=float32", *overrides])


def mtimes(cache):
    return {p.name: p.stat().st_mtime_ns for p in sorted(cache.rglob("*.h5"))}


def leftovers(cache):
    return sorted(p.name for p in cache.rglob("*") if ".tmp-" in p.name or p.name.startswith(".lock"))


def decoder_threads():
    return [t for t in threading.enumerate() if t.name.startswith("decode-")]


def test_extract_caches_every_frame_exactly_once(tmp_path, videos, backbone, caplog):
    cfg = config(tmp_path, videos)
    with caplog.at_level("INFO", logger="mouse_pipeline"):
        summary = ex.extract(cfg, progress=False)  # the real build_backbone
    assert summary.counts == {"extracted": 3, "up_to_date": 0, "failed": 0}
    assert [(r.video_id, r.frames, r.reason) for r in summary.results] == [
        (vid, n, "not cached") for vid, n in FRAMES.items()]
    assert all(r.frames_per_s > 0 for r in summary.results) and summary.seconds > 0
    assert "3 extracted" in summary.describe()
    assert "embedding spread across the frames of m1" in caplog.text
    assert "RANDOM (untrained) weights" in caplog.text
    for vid, n in FRAMES.items():
        path = cache_path(tmp_path / "cache", "resnet50v2", vid)
        emb = read_embeddings(path, expected_dim=2048, expected_backbone="resnet50v2")
        assert emb.shape == (n, 2048) and emb.dtype == np.float32
        ref = one_by_one(backbone, decode(videos / f"{vid}.avi"))
        assert ref.shape == emb.shape
        scale = np.abs(ref).max()
        np.testing.assert_allclose(emb, ref, rtol=1e-4, atol=1e-4 * scale)
        # neighbouring frames differ far more than the tolerance: a shift could not pass
        assert np.abs(ref[1:] - ref[:-1]).max(axis=1).min() > 1e-2 * scale
        attrs = read_attrs(path)
        fingerprint = video_fingerprint(videos / f"{vid}.avi")
        assert attrs["n_frames"] == n and attrs["dim"] == 2048 and attrs["fps"] == pytest.approx(10.0)
        assert (attrs["backbone"], attrs["weights"], attrs["input_size"]) == ("resnet50v2", "random", SIZE)
        assert (attrs["dtype"], attrs["precision"]) == ("float32", "float32")
        assert json.loads(attrs["crop"]) == {"mode": "none"} and attrs["pose_sha256"] == ""
        assert attrs["video_path"] == str(videos / f"{vid}.avi")
        assert (attrs["video_size"], attrs["video_mtime_ns"], attrs["video_sha256"]) == (
            fingerprint["size"], fingerprint["mtime_ns"], fingerprint["sha256"])
        assert attrs["extract_frames_per_s"] > 0
    assert leftovers(tmp_path / "cache") == []
    assert decoder_threads() == []


def test_second_run_is_a_no_op_and_a_touched_video_is_redone(tmp_path, videos, built):
    cfg = config(tmp_path, videos)
    ex.extract(cfg, progress=False)
    assert len(built) == 1
    before = mtimes(tmp_path / "cache")

    summary = ex.extract(cfg, progress=False)
    assert summary.counts == {"extracted": 0, "up_to_date": 3, "failed": 0}
    assert [r.frames for r in summary.results] == list(FRAMES.values())
    assert mtimes(tmp_path / "cache") == before
    assert len(built) == 1  # nothing to do: no backbone built, no video decoded

    st = (videos / "m2.avi").stat()
    os.utime(videos / "m2.avi", ns=(st.st_atime_ns, st.st_mtime_ns + 3_000_000_000))
    summary = ex.extract(cfg, progress=False)
    assert {r.video_id: r.status for r in summary.results} == {
        "m1": "up_to_date", "m2": "extracted", "m3": "up_to_date"}
    assert summary.results[-1].reason.startswith("video changed (mtime_ns")
    after = mtimes(tmp_path / "cache")
    assert after["m1.h5"] == before["m1.h5"] and after["m3.h5"] == before["m3.h5"]
    assert after["m2.h5"] != before["m2.h5"]

    summary = ex.extract(cfg, overwrite=True, progress=False)
    assert summary.counts["extracted"] == 3 and {r.reason for r in summary.results} == {"--overwrite"}


def test_settings_change_makes_files_stale(tmp_path, videos, backbone, built):
    ex.extract(config(tmp_path, videos), progress=False)
    summary = ex.extract(config(tmp_path, videos, "extract.dtype=float16"), progress=False)
    assert summary.counts["extracted"] == 3
    assert summary.results[0].reason.startswith("dtype changed")
    emb = read_embeddings(cache_path(tmp_path / "cache", "resnet50v2", "m1"))
    assert emb.dtype == np.float16 and emb.shape == (24, 2048)
    ref = one_by_one(backbone, decode(videos / "m1.avi"))
    np.testing.assert_allclose(emb.astype(np.float32), ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())


def test_several_decoders_give_the_same_files(tmp_path, videos, built):
    ex.extract(config(tmp_path, videos), progress=False)
    one = {vid: read_embeddings(cache_path(tmp_path / "cache", "resnet50v2", vid)) for vid in FRAMES}
    cfg = config(tmp_path, videos, f"extract.cache={tmp_path / 'cache2'}", "extract.decode_workers=3",
                 "extract.queue_batches=1")
    summary = ex.extract(cfg, progress=False)
    assert summary.counts["extracted"] == 3
    for vid in FRAMES:
        np.testing.assert_array_equal(read_embeddings(cache_path(tmp_path / "cache2", "resnet50v2", vid)), one[vid])
    assert decoder_threads() == [] and leftovers(tmp_path / "cache2") == []


def failing_batches(bad):
    """iter_batches that fails in the decoder thread after one batch of video ``bad``."""
    real = streaming.iter_batches

    def batches(path, batch_size, crop=None, out_size=None, threads=1):
        for i, batch in enumerate(real(path, batch_size, crop, out_size, threads)):
            if path.stem == bad and i == 1:
                raise InputError(f"{path}: decoding failed at frame {i * batch_size}; re-encode or re-copy it")
            yield batch

    return batches


@pytest.mark.parametrize("workers", [1, 2])
def test_decode_error_in_the_thread_propagates_and_leaves_no_file(tmp_path, videos, built, monkeypatch, workers):
    monkeypatch.setattr(streaming, "iter_batches", failing_batches("m2"))
    cfg = config(tmp_path, videos, f"extract.decode_workers={workers}")
    with pytest.raises(InputError, match=r"m2\.avi: decoding failed at frame 8"):
        ex.extract(cfg, progress=False)
    assert not cache_path(tmp_path / "cache", "resnet50v2", "m2").exists()
    assert not cache_path(tmp_path / "cache", "resnet50v2", "m3").exists()
    assert leftovers(tmp_path / "cache") == []
    assert decoder_threads() == []


def test_keep_going_records_the_failure_and_does_the_rest(tmp_path, videos, built, monkeypatch):
    monkeypatch.setattr(streaming, "iter_batches", failing_batches("m2"))
    summary = ex.extract(config(tmp_path, videos), progress=False, keep_going=True)
    assert {r.video_id: r.status for r in summary.results} == {"m1": "extracted", "m2": "failed", "m3": "extracted"}
    assert "decoding failed at frame 8" in summary.failed[0].reason and "FAILED resnet50v2/m2" in summary.describe()
    assert sorted(mtimes(tmp_path / "cache")) == ["m1.h5", "m3.h5"]
    assert leftovers(tmp_path / "cache") == []


def test_bad_video_is_found_before_anything_is_written(tmp_path, videos, built):
    (videos / "broken.avi").write_bytes(b"\x00" * 1000)
    (videos / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match=r"2 videos cannot be extracted: .*broken\.avi.* \| .*empty\.mp4"):
        ex.extract(config(tmp_path, videos), progress=False)
    assert not (tmp_path / "cache").exists() and built == []


def test_missing_or_empty_video_folder(tmp_path, built):
    with pytest.raises(InputError, match=f"{tmp_path / 'nowhere'}: no such file or folder"):
        ex.extract(config(tmp_path, tmp_path / "nowhere"), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no video file"):
        ex.extract(config(tmp_path, tmp_path / "empty"), progress=False)


def test_duplicate_video_ids(tmp_path, built):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a b.avi", 4, 0)
    write_video(folder / "a_b.avi", 4, 1)
    with pytest.raises(InputError, match="video id 'a_b' is also the id of"):
        ex.extract(config(tmp_path, folder), progress=False)


def test_glob_and_single_file(tmp_path, videos, built):
    summary = ex.extract(config(tmp_path, f"{videos}/m[13].avi"), progress=False)
    assert [r.video_id for r in summary.results] == ["m1", "m3"]
    summary = ex.extract(config(tmp_path, videos / "m2.avi"), progress=False)
    assert [(r.video_id, r.status) for r in summary.results] == [("m2", "extracted")]


def test_box_crop(tmp_path, videos, backbone, built):
    cfg = config(tmp_path, f"{videos}/m1.avi", "data.crop.mode=box", "data.crop.box=[8, 16, 40, 32]")
    ex.extract(cfg, progress=False)
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    assert json.loads(read_attrs(path)["crop"]) == {"mode": "box", "box": [8, 16, 40, 32]}
    ref = one_by_one(backbone, decode(videos / "m1.avi", crop=(8, 16, 40, 32)))
    np.testing.assert_allclose(read_embeddings(path), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_pose_crop(tmp_path, videos, backbone, built):
    pose = tmp_path / "pose"
    pose.mkdir()
    n = FRAMES["m1"]
    track = np.column_stack([np.full(n, 30.0), np.full(n, 33.0), np.ones(n)])
    write_dlc_csv(pose / "m1DLC_resnet50_openfieldJan1shuffle1_1000.csv", {"midbody": track})
    cfg = config(tmp_path, f"{videos}/m1.avi", "data.crop.mode=pose", f"data.crop.pose={pose}",
                 "data.crop.size=24")
    ex.extract(cfg, progress=False)
    path = cache_path(tmp_path / "cache", "resnet50v2", "m1")
    attrs = read_attrs(path)
    assert json.loads(attrs["crop"]) == {"mode": "pose", "bodypart": "midbody", "min_likelihood": 0.6, "size": 24}
    assert attrs["pose_file"].startswith("m1DLC_") and len(attrs["pose_sha256"]) == 64
    ref = one_by_one(backbone, decode(videos / "m1.avi", crop=(18, 21, 24, 24)))  # centred on (30, 33)
    np.testing.assert_allclose(read_embeddings(path), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    assert ex.extract(cfg, progress=False).counts["up_to_date"] == 1

    write_dlc_csv(next(pose.glob("*.csv")), {"midbody": track[:-1]})  # another pose file: stale, and too short
    with pytest.raises(InputError, match=f"{n - 1} pose rows but .*m1.avi has {n} frames"):
        ex.extract(cfg, progress=False)
    assert read_attrs(path)["pose_sha256"] == attrs["pose_sha256"]  # the cache file was left alone


def test_locked_cache_folder(tmp_path, videos, built):
    one = config(tmp_path, f"{videos}/m1.avi")
    ex.extract(one, progress=False)
    folder = tmp_path / "cache" / "resnet50v2"
    (folder / ".lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                              "started": "2024-01-01T00:00:00"}))
    assert ex.extract(one, progress=False).counts["up_to_date"] == 1  # nothing to write: no lock needed
    with pytest.raises(LockError, match=f"locked by pid {os.getppid()}"):
        ex.extract(config(tmp_path, videos), progress=False)
    assert sorted(mtimes(tmp_path / "cache")) == ["m1.h5"]
    assert (folder / ".lock").exists()


def test_stale_temporary_files_are_cleaned(tmp_path, videos, built):
    folder = tmp_path / "cache" / "resnet50v2"
    folder.mkdir(parents=True)
    tmp = folder / "m1.h5.tmp-otherhost-12345-abcd"
    tmp.write_bytes(b"left by a killed run")
    ex.extract(config(tmp_path, videos), progress=False)
    assert not tmp.exists()


def test_cache_table(tmp_path, videos, built):
    cfg = config(tmp_path, videos)
    ex.extract(cfg, progress=False)
    rows = ex.cache_table(tmp_path / "cache")
    assert [(r["video"], r["backbone"], r["frames"], r["dim"], r["dtype"], r["status"]) for r in rows] == [
        (vid, "resnet50v2", n, 2048, "float32", "fresh") for vid, n in FRAMES.items()]
    assert float(rows[0]["size_mb"]) > 0
    st = (videos / "m1.avi").stat()
    os.utime(videos / "m1.avi", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    (videos / "m2.avi").unlink()
    status = {r["video"]: (r["status"], r["reason"]) for r in ex.cache_table(tmp_path / "cache")}
    assert status["m1"][0] == "stale" and status["m1"][1].startswith("video changed")
    assert status["m2"] == ("unknown", "video not found")
    assert status["m3"] == ("fresh", "")
    other = config(tmp_path, videos, "extract.input_size=48")
    assert {r["video"]: r["status"] for r in ex.cache_table(tmp_path / "cache", other)}["m3"] == "stale"
    assert {r["video"]: r["status"] for r in ex.cache_table(tmp_path / "cache", cfg)}["m3"] == "fresh"
