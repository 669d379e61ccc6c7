"""Fusion of streams in stage 2 (``train.inputs``): training, report, predict, errors."""

import json

import h5py
import numpy as np
import pytest

from mouse_pipeline.config import load_config
from mouse_pipeline.dataset import load_dataset, load_into_memory
from mouse_pipeline.runs import RunFolder
from mouse_pipeline.streams import FusedFeatures, display_name, input_sets, streams_of
from mouse_pipeline.synthetic import generate_dataset
from tests.integration.runs import cli, cli_ok, error_line

BACKBONE = "mobilenet_v3_small"  # the cheapest registry backbone
FUSED = f"{BACKBONE},pose"
BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four labelled videos with pose files, both streams extracted, and a new video."""
    root = tmp_path_factory.mktemp("fusion")
    generate_dataset(root / "data", n_videos=4, n_frames=80, size=32, fps=5, seed=11)
    generate_dataset(root / "new", n_videos=1, n_frames=50, size=32, fps=5, seed=32, prefix="new")
    cli_ok("extract", "--config", "configs/demo.yaml", "--quiet", *sets(root, "data.labels=null"))
    return root


def settings(root, *extra):
    base = {"data.videos": root / "data" / "videos", "data.labels": root / "data" / "labels",
            "data.crop.mode": "none", "extract.pose_features.pose": root / "data" / "pose",
            "extract.cache": root / "cache", "extract.backbones": f"[{BACKBONE}, pose]",
            "extract.weights": "random", "extract.input_size": 32, "train.models": "[lstm]",
            "train.epochs": 2, "train.window.length": 32, "train.window.stride": 16,
            "train.lstm.units": 8, "train.folds.scheme": "group_kfold", "train.folds.k": 2}
    return [f"{k}={v}" for k, v in base.items()] + list(extra)


def sets(root, *extra):
    return [a for p in settings(root, *extra) for a in ("--set", p)]


def train(root, run, *extra, final=False):
    return cli("train", "--config", "configs/demo.yaml", "--quiet", *(["--final"] if final else []),
               *sets(root, f"train.run={run}", *extra))


def test_fused_frame_source_reads_the_streams_side_by_side(data):
    cfg = load_config("configs/demo.yaml", settings(data))
    parts = [load_dataset(cfg, s) for s in (BACKBONE, "pose")]
    fused = load_dataset(cfg, FUSED)
    assert [v.video_id for v in fused] == [v.video_id for v in parts[0]]
    for v, a, b in zip(fused, *parts, strict=True):
        assert isinstance(v.features, FusedFeatures)
        assert v.dim == a.dim + b.dim and v.n_frames == a.n_frames == b.n_frames
        window = v.features[10:42]  # read per window from both files
        np.testing.assert_array_equal(window, np.concatenate([a.features[10:42], b.features[10:42]], 1))
        np.testing.assert_array_equal(v.labels.matrix, a.labels.matrix)
    in_memory = load_into_memory(fused, 1.0)
    for m, v in zip(in_memory, fused, strict=True):
        assert isinstance(m.features, np.ndarray)
        np.testing.assert_array_equal(m.features[10:42], v.features[10:42])
    assert input_sets(cfg) == [BACKBONE, "pose"]  # default: each backbone alone
    two = load_config("configs/demo.yaml", settings(data, f"train.inputs=[[{BACKBONE}, pose], [pose]]"))
    assert input_sets(two) == [FUSED, "pose"] and streams_of(FUSED) == (BACKBONE, "pose")
    assert display_name(f"{FUSED}/lstm") == f"{BACKBONE} & pose/lstm"


def test_default_inputs_equal_each_backbone_alone_bit_for_bit(data, tmp_path):
    """train.inputs null is the run of before: its folders and numbers are those of each
    backbone named as its own one-stream input set."""
    one = f"extract.backbones=[{BACKBONE}]"
    assert train(data, tmp_path / "default", one).exit_code == 0
    assert train(data, tmp_path / "explicit", one, f"train.inputs=[[{BACKBONE}]]").exit_code == 0
    a, b = RunFolder(tmp_path / "default"), RunFolder(tmp_path / "explicit")
    assert a.find_models() == b.find_models() and list(a.find_models()) == [f"{BACKBONE}/lstm"]
    for fold in a.read_folds():
        ra, rb = (r.read_fold(f"{BACKBONE}/lstm", fold, BEHAVIORS) for r in (a, b))
        for vid in ra.test:
            np.testing.assert_array_equal(ra.test[vid], rb.test[vid])


@pytest.mark.slow
def test_a_fused_set_trains_reports_and_predicts_computing_both_streams(data, tmp_path):
    run = tmp_path / "run"
    result = train(data, run, f"train.inputs=[[{BACKBONE}, pose]]", final=True)
    assert result.exit_code == 0, result.output
    folder = RunFolder(run)
    assert list(folder.find_models()) == [f"{FUSED}/lstm"]
    dims = {}
    for s in (BACKBONE, "pose"):
        with h5py.File(data / "cache" / s / "mouse_000.h5", "r") as f:
            dims[s] = f["embeddings"].shape[1]
    with np.load(run / FUSED / "lstm" / "final" / "normalization.npz") as z:
        assert z["mean"].shape[-1] == dims[BACKBONE] + dims["pose"]  # the model's input width
    # memory mode reads per window from both files, and two workers fit the trials: the same numbers
    assert train(data, tmp_path / "per_window", f"train.inputs=[[{BACKBONE}, pose]]",
                 "train.memory_gb=0", "train.workers=2").exit_code == 0
    other = RunFolder(tmp_path / "per_window")
    for fold in folder.read_folds():
        ra, rb = (r.read_fold(f"{FUSED}/lstm", fold, BEHAVIORS) for r in (folder, other))
        for vid in ra.test:
            np.testing.assert_array_equal(ra.test[vid], rb.test[vid])
    cli_ok("report", "--run", run)
    html = (run / "report.html").read_text()
    assert f"{BACKBONE} &amp; pose/lstm" in html or f"{BACKBONE} & pose/lstm" in html
    out = tmp_path / "out"
    new = data / "new"
    result = cli("predict", "--run", run, "--videos", new / "videos", "--pose", new / "pose",
                 "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    for s in (BACKBONE, "pose"):  # predict extracted both streams of the new video
        assert (data / "cache" / s / "new_000.h5").is_file()
    assert len((out / "new_000_predictions.csv").read_text().splitlines()) == 51
    side = json.loads((out / "predictions.json").read_text())
    assert side["streams"] == {f"{FUSED}/lstm": [BACKBONE, "pose"]}


def test_streams_of_different_frame_counts_exit_2_naming_both_files(data, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(data / "cache", cache)
    path = cache / "pose" / "mouse_001.h5"
    with h5py.File(path, "r+") as f:  # a pose file one row short (within the label tolerance)
        rows = f["embeddings"][:-1]
        del f["embeddings"]
        f["embeddings"] = rows
        f.attrs["n_frames"] = len(rows)
    line = error_line(train(data, tmp_path / "run", f"extract.cache={cache}", "data.max_frame_mismatch=1",
                            f"train.inputs=[[{BACKBONE}, pose]]"))
    assert str(path) in line and str(cache / BACKBONE / "mouse_001.h5") in line, line
    assert "79 frames" in line and "has 80" in line, line


def test_a_stream_not_cached_or_not_listed_is_one_line(data, tmp_path):
    line = error_line(train(data, tmp_path / "run", f"extract.backbones=[{BACKBONE}, pose, {BACKBONE}+motion]",
                            f"train.inputs=[[{BACKBONE}, {BACKBONE}+motion]]"))
    assert f"{BACKBONE}+motion" in line and "mouse-pipeline extract" in line and "cache import" in line, line
    line = error_line(train(data, tmp_path / "run2", f"extract.backbones=[{BACKBONE}]",
                            f"train.inputs=[[{BACKBONE}, pose]]"))
    assert "train.inputs[0]" in line and "pose not in extract.backbones" in line, line


@pytest.mark.slow
def test_a_per_stream_projection_projects_each_stream_to_its_width(data, tmp_path):
    from mouse_pipeline.sequences.models import load_model

    run = tmp_path / "run"
    result = train(data, run, f"train.inputs=[[{BACKBONE}, pose]]", "train.fusion.projection=4")
    assert result.exit_code == 0, result.output
    dims = []
    for s in (BACKBONE, "pose"):
        with h5py.File(data / "cache" / s / "mouse_000.h5", "r") as f:
            dims.append(f["embeddings"].shape[1])
    model = load_model(run / FUSED / "lstm" / "fold_0" / "model.keras")
    assert [tuple(model.get_layer(f"stream_{i}_projection").kernel.shape) for i in (0, 1)] == \
        [(dims[0], 4), (dims[1], 4)]
