"""A cache file of another backbone (or other settings) where this backbone's is expected.

Someone copies ``cache/mobilenet_v3_small/<id>.h5`` over ``cache/resnet50v2/<id>.h5``
(576-d embeddings where 2048-d ones belong), or a ResNet50V2 file made at another input
size. Extract must not take it for fresh (it re-extracts it, saying why), ``cache ls`` must
mark it stale, and stage 2 must refuse to train on it with one line naming the file
instead of mixing embeddings of different backbones or settings.
"""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline.config import load_config
from mouse_pipeline.dataset import load_dataset
from mouse_pipeline.errors import CacheError
from mouse_pipeline.features.extract import extract
from mouse_pipeline.synthetic import generate_dataset

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IDS = ["mouse_000", "mouse_001", "mouse_002"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign")
    generate_dataset(root, n_videos=3, n_frames=32, size=64, fps=5, seed=4)
    return root


def overrides(root: Path, cache: Path, backbones: str = "[resnet50v2]", size: int = 32) -> list[str]:
    return [f"data.videos={root / 'videos'}", f"data.labels={root / 'labels'}", f"extract.cache={cache}",
            f"extract.backbones={backbones}", "extract.weights=random", "data.crop.mode=none",
            f"extract.input_size={size}", "extract.batch_size=16"]


def config(root, cache, **kw):
    return load_config(REPO / "configs" / "demo.yaml", overrides(root, cache, **kw))


def set_args(root, cache, **kw) -> list[str]:
    return [arg for item in overrides(root, cache, **kw) for arg in ("--set", item)]


def embeddings(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as f:
            out[path.stem] = f["embeddings"][()]
    return out


def ls_rows(run_cli, cache, *args) -> dict[tuple[str, str], dict[str, str]]:
    """``cache ls`` parsed: {(backbone, video): {column: value}}."""
    result = run_cli("cache", "ls", cache, *args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    header = lines[0].split()
    assert header == ["video", "backbone", "frames", "dim", "dtype", "weights", "size_mb", "status", "reason"]
    rows = {}
    for line in lines[1:]:
        cells = line.split(None, len(header) - 1)
        row = dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=True))
        rows[(row["backbone"], row["video"])] = row
    return rows


def statuses(rows, backbone):
    return [rows[(backbone, vid)]["status"] for vid in IDS]


def test_file_of_another_backbone_is_stale_refused_by_training_and_re_extracted(data, tmp_path, run_cli):
    cache = tmp_path / "cache"
    extract(config(data, cache, backbones="[resnet50v2, mobilenet_v3_small]"), progress=False)
    reference = embeddings(cache / "resnet50v2")
    assert {e.shape for e in reference.values()} == {(32, 2048)}
    target = cache / "resnet50v2" / "mouse_001.h5"
    shutil.copyfile(cache / "mobilenet_v3_small" / "mouse_001.h5", target)

    # cache ls, without and with the config: the copy is stale, everything else fresh
    for args in ([], ["--config", REPO / "configs" / "demo.yaml", *set_args(data, cache)]):
        rows = ls_rows(run_cli, cache, *args)
        assert statuses(rows, "resnet50v2") == ["fresh", "stale", "fresh"], rows
        foreign = rows[("resnet50v2", "mouse_001")]
        assert foreign["dim"] == "576"
        assert foreign["reason"] == "holds mobilenet_v3_small embeddings, not resnet50v2"
        assert statuses(rows, "mobilenet_v3_small") == ["fresh"] * 3

    # stage 2 refuses it, naming the file, in the library and on the command line
    cfg = config(data, cache)
    message = (f"{target}: holds 'mobilenet_v3_small' embeddings where 'resnet50v2' was expected; "
               "re-run extract with --overwrite")
    with pytest.raises(CacheError) as info:
        load_dataset(cfg, "resnet50v2")
    assert str(info.value) == message
    result = run_cli("train", "--config", REPO / "configs" / "demo.yaml", "--quiet", *set_args(data, cache),
                     "--run", tmp_path / "run")
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert errors == [f"error: {message}"], result.output
    assert not list((tmp_path / "run").rglob("*.keras"))

    # extract does not serve it as fresh: that one file is extracted again, the rest skipped
    summary = extract(cfg, progress=False)
    by_id = {r.video_id: r for r in summary.results}
    assert by_id["mouse_001"].status == "extracted"
    assert by_id["mouse_001"].reason == "backbone changed ('mobilenet_v3_small' -> 'resnet50v2')"
    assert [by_id[v].status for v in ("mouse_000", "mouse_002")] == ["up_to_date", "up_to_date"]
    got = embeddings(cache / "resnet50v2")
    assert got.keys() == reference.keys()
    for vid in reference:
        np.testing.assert_array_equal(got[vid], reference[vid])
    assert statuses(ls_rows(run_cli, cache), "resnet50v2") == ["fresh"] * 3
    assert [v.features.shape for v in load_dataset(cfg, "resnet50v2")] == [(32, 2048)] * 3


def test_file_made_at_another_input_size_is_stale_refused_by_training_and_re_extracted(data, tmp_path,
                                                                                        run_cli):
    cache, other = tmp_path / "cache", tmp_path / "other"
    cfg = config(data, cache, size=32)
    extract(cfg, progress=False)
    extract(config(data, other, size=48), progress=False)
    reference = embeddings(cache / "resnet50v2")
    target = cache / "resnet50v2" / "mouse_001.h5"
    shutil.copyfile(other / "resnet50v2" / "mouse_001.h5", target)  # same backbone and dim, 48 px

    # judged against the config, the 48 px file is stale
    rows = ls_rows(run_cli, cache, "--config", REPO / "configs" / "demo.yaml", *set_args(data, cache))
    assert statuses(rows, "resnet50v2") == ["fresh", "stale", "fresh"], rows
    assert rows[("resnet50v2", "mouse_001")]["reason"] == "input_size changed (48 -> 32)"

    with pytest.raises(CacheError) as info:
        load_dataset(cfg, "resnet50v2")
    assert str(info.value).startswith(f"{target}: made with other settings than this config's (input_size "
                                      "changed (48 -> 32)); run `mouse-pipeline extract` with this config")

    summary = extract(cfg, progress=False)
    by_id = {r.video_id: r for r in summary.results}
    assert (by_id["mouse_001"].status, by_id["mouse_001"].reason) == ("extracted", "input_size changed (48 -> 32)")
    assert by_id["mouse_000"].status == by_id["mouse_002"].status == "up_to_date"
    got = embeddings(cache / "resnet50v2")
    for vid in reference:
        np.testing.assert_array_equal(got[vid], reference[vid])
    assert len(load_dataset(cfg, "resnet50v2")) == 3


def test_a_whole_cache_made_at_another_input_size_is_refused_by_training(data, tmp_path, run_cli):
    """Every file alike, but at 48 px where the config says 32: the run would record 32 and
    predict would extract new videos at 32 for a model trained on 48 px embeddings."""
    cache = tmp_path / "cache"
    extract(config(data, cache, size=48), progress=False)
    result = run_cli("train", "--config", REPO / "configs" / "demo.yaml", "--quiet", *set_args(data, cache),
                     "--run", tmp_path / "run")
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith(f"error: {cache / 'resnet50v2' / 'mouse_000.h5'}: made with other settings than "
                                "this config's (input_size changed (48 -> 32)); run `mouse-pipeline extract`")
    assert not list((tmp_path / "run").rglob("*.keras"))
    assert len(load_dataset(config(data, cache, size=48), "resnet50v2")) == 3  # its own settings: used
