"""The motion stream through the CLI: RGB and motion files per video with a pose crop,
SIGKILL mid-extraction and a resumed run equal to an uninterrupted one, ``cache ls``,
and stage 2 trained on ``resnet50v2+motion`` with ``predict`` computing the stream for a
new video."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline.synthetic import generate_dataset
from tests.integration.runs import cli_ok

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STREAMS = ("resnet50v2", "resnet50v2+motion")
VIDEOS = ("mouse_000", "mouse_001", "mouse_002")


def extract_args(root: Path, cache: Path, streams=STREAMS) -> list[str]:
    sets = {"data.videos": root / "data" / "videos", "data.labels": root / "data" / "labels",
            "data.crop.mode": "pose", "data.crop.pose": root / "data" / "pose", "data.crop.size": 32,
            "extract.cache": cache, "extract.backbones": f"[{', '.join(streams)}]", "extract.weights": "random",
            "extract.input_size": 32, "extract.batch_size": 16}
    return ["--config", "configs/demo.yaml", "--quiet", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]


def run_to_end(args) -> None:
    proc = subprocess.run([sys.executable, "-m", "stages.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def complete_files(cache: Path) -> dict[tuple[str, str], np.ndarray]:
    """Every file with a final name, which must be whole: (stream, video) -> embeddings."""
    out = {}
    for stream in STREAMS:
        for path in sorted((cache / stream).glob("*.h5")):
            with h5py.File(path, "r") as f:
                emb = f["embeddings"][()]
                assert emb.shape[0] == f.attrs["n_frames"] == 120
                assert f.attrs["backbone"] == stream
                assert ("motion" in f.attrs) == stream.endswith("+motion")
                out[(stream, path.stem)] = emb
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    generate_dataset(root / "data", n_videos=3, n_frames=120, size=64, fps=5, seed=21)
    generate_dataset(root / "new", n_videos=1, n_frames=60, size=64, fps=5, seed=22, prefix="new")
    run_to_end(["extract", *extract_args(root, root / "reference")])  # uninterrupted
    return root


def test_two_files_per_video_and_a_killed_extraction_resumes_bit_for_bit(data, tmp_path, run_cli):
    ref = complete_files(data / "reference")
    assert sorted(ref) == sorted((s, v) for s in STREAMS for v in VIDEOS)
    attrs = dict(h5py.File(data / "reference" / "resnet50v2+motion" / "mouse_000.h5", "r").attrs)
    assert json.loads(attrs["motion"]) == {"method": "dis", "preset": "fast", "flow_scale": 8.0}
    assert json.loads(attrs["crop"])["mode"] == "pose" and len(attrs["pose_sha256"]) == 64

    cache = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "stages.cli", "extract", *map(str, extract_args(data, cache))],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # killed as soon as the first video's motion file is complete: the next one is under way
        deadline = time.monotonic() + 300
        while not list((cache / "resnet50v2+motion").glob("*.h5")) and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = complete_files(cache)  # whatever has its final name is whole
    assert 2 <= len(partial) < len(ref)
    run_to_end(["extract", *extract_args(data, cache)])
    got = complete_files(cache)
    assert got.keys() == ref.keys()
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key])
    assert not [p.name for p in cache.rglob("*") if ".tmp-" in p.name or p.name == ".lock"]

    result = run_cli("cache", "ls", cache, *extract_args(data, cache))
    rows = [line.split() for line in result.output.splitlines()[1:] if line.strip()]
    assert sorted((r[1], r[0], r[7]) for r in rows) == sorted((s, v, "fresh") for s in STREAMS for v in VIDEOS)


def test_stage2_trains_on_the_motion_stream_and_predict_computes_it_for_new_videos(data, tmp_path):
    run = tmp_path / "run"
    train_sets = {"train.run": run, "train.models": "[lstm]", "train.epochs": 2, "train.window.length": 32,
                  "train.window.stride": 16, "train.lstm.units": 8, "train.folds.scheme": "fixed",
                  "train.folds.train": "[mouse_000, mouse_001]", "train.folds.test": "[mouse_002]"}
    args = extract_args(data, data / "reference", streams=("resnet50v2+motion",))
    cli_ok("train", *args, "--final", *[a for k, v in train_sets.items() for a in ("--set", f"{k}={v}")])
    assert (run / "resnet50v2+motion" / "lstm" / "final").is_dir()
    assert not (data / "reference" / "resnet50v2+motion" / "new_000.h5").exists()
    out = tmp_path / "pred"
    cli_ok("predict", "--run", run, "--videos", data / "new" / "videos", "--pose", data / "new" / "pose",
           "--out", out, "--quiet")
    made = data / "reference" / "resnet50v2+motion" / "new_000.h5"
    with h5py.File(made, "r") as f:  # predict extracted the motion stream the model needs
        assert f["embeddings"].shape == (60, 2048) and json.loads(f.attrs["motion"])["method"] == "dis"
    assert not (data / "reference" / "resnet50v2" / "new_000.h5").exists()  # and nothing it does not
    assert (out / "new_000_predictions.csv").is_file()
    record = json.loads((out / "predictions.json").read_text())
    assert "resnet50v2+motion" in json.dumps(record)
