"""The ``pose`` stream through the CLI: cache contract, freshness, errors, kill safety, training."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline.config import load_config
from mouse_pipeline.features import pose_stream
from mouse_pipeline.features.extract import extract
from mouse_pipeline.features.writer import CacheWriter
from mouse_pipeline.fileio import sha256_file
from mouse_pipeline.pose import read_track
from mouse_pipeline.pose_features import PoseGeometry, compute, feature_names
from mouse_pipeline.synthetic import generate_dataset
from mouse_pipeline.synthetic_draw import BODY_PARTS
from tests.integration.runs import cli, cli_ok, error_line

REPO = Path(__file__).resolve().parents[2]
IDS = ["mouse_000", "mouse_001", "mouse_002"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose_data")
    generate_dataset(root, n_videos=3, n_frames=120, size=32, fps=10, seed=2)
    return root


def pose_sets(videos, pose, cache, *extra):
    pairs = [f"data.videos={videos}", f"data.crop.pose={pose}", f"extract.cache={cache}",
             "extract.backbones=[pose]", "data.labels=null", *extra]
    return [a for p in pairs for a in ("--set", p)]


def extract_pose(data, cache, pose=None, *extra):
    return cli("extract", "--quiet", *pose_sets(data / "videos", pose or data / "pose", cache, *extra))


def mtimes(cache):
    return {p.stem: p.stat().st_mtime_ns for p in (cache / "pose").glob("*.h5")}


def test_extract_writes_the_cache_contract_and_cache_ls_lists_it(data, tmp_path):
    cache = tmp_path / "cache"
    assert extract_pose(data, cache).exit_code == 0
    assert sorted(mtimes(cache)) == IDS
    names = feature_names(BODY_PARTS, [("tailbase", "midbody", "snout")])
    for vid in IDS:
        pose_file = data / "pose" / f"{vid}.csv"
        with h5py.File(cache / "pose" / f"{vid}.h5", "r") as f:
            a = dict(f.attrs)
            emb = f["embeddings"][()]
        assert emb.shape == (120, len(names)) and emb.dtype == np.float32 and a["n_frames"] == 120
        assert [str(n) for n in a["feature_names"]] == names and a["dim"] == len(names)
        assert [str(n) for n in a["bodyparts"]] == list(BODY_PARTS)
        assert (a["backbone"], a["weights"], a["pose_file"]) == ("pose", "none", f"{vid}.csv")
        assert a["pose_sha256"] == sha256_file(pose_file) and a["pose_path"] == str(pose_file)
        params = json.loads(a["pose_features"])
        assert params["axis"] == ["tailbase", "snout"] and params["min_likelihood"] == 0.6
        assert a["fps"] == 10.0 and a["video_path"] == str(data / "videos" / f"{vid}.mp4")
        # the numbers are pose_features.compute of the file's points, nothing else
        tracks = [read_track(pose_file, p) for p in BODY_PARTS]
        xy = np.stack([t.xy for t in tracks], 1)
        like = np.stack([t.likelihood for t in tracks], 1)
        want = compute(xy, like, PoseGeometry(2, 0, 1, ((2, 1, 0),)), 10.0, 0.6)
        np.testing.assert_array_equal(emb, want)
    assert not list((cache / "pose").glob("*.tmp-*"))
    listed = cli_ok("cache", "ls", cache).output
    assert all(f"{vid}  pose" in listed for vid in IDS) and "fresh" in listed
    judged = cli_ok("cache", "ls", cache, *pose_sets(data / "videos", data / "pose", cache)).output
    assert judged.count("fresh") == 3 and "stale" not in judged
    before = mtimes(cache)
    again = extract_pose(data, cache)
    assert again.exit_code == 0 and "0 extracted, 3 up to date" in again.output
    assert mtimes(cache) == before


def test_a_changed_pose_file_or_setting_makes_the_file_stale(data, tmp_path):
    pose, cache = tmp_path / "pose", tmp_path / "cache"
    shutil.copytree(data / "pose", pose)
    assert extract_pose(data, cache, pose).exit_code == 0
    before = mtimes(cache)
    lines = (pose / "mouse_001.csv").read_text().splitlines(keepends=True)
    cells = lines[10].split(",")
    cells[1] = f"{float(cells[1]) + 1.5:.4f}"  # the snout moved 1.5 px in frame 6
    lines[10] = ",".join(cells)
    (pose / "mouse_001.csv").write_text("".join(lines))
    listed = cli_ok("cache", "ls", cache, *pose_sets(data / "videos", pose, cache)).output
    row = next(r for r in listed.splitlines() if r.startswith("mouse_001"))
    assert "stale" in row and "pose_sha256 changed" in row
    result = extract_pose(data, cache, pose)
    assert result.exit_code == 0 and "1 extracted, 2 up to date" in result.output
    after = mtimes(cache)
    assert after["mouse_000"] == before["mouse_000"] and after["mouse_001"] != before["mouse_001"]
    # another setting: every file is stale
    listed = cli_ok("cache", "ls", cache, *pose_sets(data / "videos", pose, cache,
                                                     "extract.pose_features.centre=null")).output
    assert listed.count("pose_features changed") == 3
    result = extract_pose(data, cache, pose, "extract.pose_features.centre=null")
    assert result.exit_code == 0 and "3 extracted" in result.output


def _edit_pose(path, edit):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(edit(lines)))


def _no_forepaw(lines):
    parts = lines[1].rstrip("\n").split(",")
    cols = [j for j, p in enumerate(parts) if p == "left_forepaw"][2:]  # its likelihood column
    out = lines[:3]
    for line in lines[3:]:
        cells = line.rstrip("\n").split(",")
        for j in cols:
            cells[j] = "0.2000"
        out.append(",".join(cells) + "\n")
    return out


@pytest.mark.parametrize("case, pattern", [
    ("missing_part", r"mouse_000\.csv: body part\(s\) tail_tip not found; the file has: snout, midbody, "
                     r"tailbase, left_ear, right_ear, left_forepaw, right_forepaw"),
    ("below_threshold", r"mouse_001\.csv: no point of body part\(s\) left_forepaw \(highest 0\.2\) "
                        r"reaches likelihood 0\.6"),
    ("frame_count", r"mouse_002\.csv: 100 pose rows but .*mouse_002\.mp4 has 120 frames"),
    ("no_pose_file", r"pose: no pose file for video 'mouse_001'"),
])
def test_bad_pose_files_exit_2_with_one_line_naming_the_file(data, tmp_path, case, pattern):
    import re

    pose, cache = tmp_path / "pose", tmp_path / "cache"
    shutil.copytree(data / "pose", pose)
    extra = []
    if case == "missing_part":
        extra = ["extract.pose_features.bodyparts=[snout, midbody, tailbase, tail_tip]"]
    elif case == "below_threshold":
        _edit_pose(pose / "mouse_001.csv", _no_forepaw)
    elif case == "frame_count":
        _edit_pose(pose / "mouse_002.csv", lambda lines: lines[:103])
    else:
        (pose / "mouse_001.csv").unlink()
    line = error_line(extract_pose(data, cache, pose, *extra))
    assert re.search(pattern, line), line
    assert not cache.exists() or not list(cache.rglob("*.h5"))


def test_a_failure_while_writing_leaves_no_partial_file(data, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cfg = load_config(None, ["extract.backbones=[pose]", f"data.videos={data / 'videos'}",
                             f"data.crop.pose={data / 'pose'}", f"extract.cache={cache}", "data.labels=null"])
    calls = {"n": 0}
    real = CacheWriter.write

    def write(self, batch):
        calls["n"] += 1
        if calls["n"] == 2:  # the second video, mid-file
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(CacheWriter, "write", write)
    with pytest.raises(KeyboardInterrupt):
        extract(cfg, progress=False)
    assert sorted(p.name for p in (cache / "pose").iterdir() if p.name != ".lock") == ["mouse_000.h5"]
    monkeypatch.setattr(CacheWriter, "write", real)
    summary = extract(cfg, progress=False)
    assert summary.counts == {"extracted": 2, "up_to_date": 1, "failed": 0}
    job = pose_stream.PosePlan(cfg, pose_stream_jobs(cfg))
    assert not job.todo  # every file fresh now
    for pj in job.jobs:
        assert pose_stream.is_fresh(job.target(pj), pose_stream.expected_for(cfg, pj))[0]


def pose_stream_jobs(cfg):
    from mouse_pipeline.features.planning import describe_videos

    return describe_videos(cfg)


@pytest.mark.slow
def test_extract_survives_kills_bit_for_bit(tmp_path):
    root = tmp_path / "data"
    generate_dataset(root, n_videos=6, n_frames=300, size=32, fps=10, seed=4)
    args = [sys.executable, "-m", "stages.cli", "extract", "--quiet"]

    def run(cache):
        return args + pose_sets(root / "videos", root / "pose", cache)

    ref, cache = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(run(ref), cwd=REPO, check=True, capture_output=True, timeout=300)
    rng = np.random.default_rng(3)
    kills = 0

    def written() -> list[str]:  # final files and temporary ones (a write under way)
        folder = cache / "pose"
        return sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.is_dir() else []

    for _ in range(6):
        before = written()
        proc = subprocess.Popen(run(cache), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill once the run is writing (a new file or temporary file appeared), not during its
        # start-up: a fixed delay landed after the end on a quiet machine and before it on a busy one
        while proc.poll() is None and written() == before:
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0.0, 0.05)))
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        for path in (cache / "pose").glob("*.h5") if (cache / "pose").is_dir() else []:
            with h5py.File(path, "r") as f:  # a file with its final name is whole
                assert f["embeddings"].shape[0] == f.attrs["n_frames"]
    subprocess.run(run(cache), cwd=REPO, check=True, capture_output=True, timeout=300)
    assert kills >= 1
    for path in sorted((ref / "pose").glob("*.h5")):
        with h5py.File(path, "r") as a, h5py.File(cache / "pose" / path.name, "r") as b:
            np.testing.assert_array_equal(a["embeddings"][()], b["embeddings"][()])
    assert not [p for p in (cache / "pose").iterdir() if p.name != ".lock" and p.suffix != ".h5"]


@pytest.mark.slow
def test_train_on_pose_learns_rearing_and_predict_computes_pose_for_new_videos(tmp_path):
    from sklearn.metrics import average_precision_score

    from mouse_pipeline.runs import RunFolder

    data, new, cache, run = tmp_path / "data", tmp_path / "new", tmp_path / "cache", tmp_path / "run"
    generate_dataset(data, n_videos=4, n_frames=240, size=32, fps=10, seed=21)
    generate_dataset(new, n_videos=1, n_frames=80, size=32, fps=10, seed=22, prefix="new")
    sets = {"data.videos": data / "videos", "data.labels": data / "labels", "data.crop.mode": "none",
            "data.crop.pose": data / "pose", "extract.cache": cache, "extract.backbones": "[pose]",
            "train.run": run, "train.models": "[lstm]", "train.epochs": 5, "train.patience": 3,
            "train.learning_rate": 0.01, "train.batch_size": 4,
            "train.input_dropout": 0.1, "train.window.length": 32, "train.window.stride": 16,
            "train.lstm.units": 16, "train.folds.scheme": "group_kfold", "train.folds.k": 2}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    cli_ok("extract", "--config", "configs/demo.yaml", "--quiet", *args)
    cli_ok("train", "--config", "configs/demo.yaml", "--quiet", "--final", *args)
    folder = RunFolder(run)
    behaviors = ("grooming", "mid_rearing", "wall_rearing")
    labels, probs = [], []
    for fold in folder.read_folds():
        result = folder.read_fold("pose/lstm", fold, behaviors)
        for vid, p in result.test.items():
            labels.append(np.loadtxt(data / "labels" / f"{vid}.csv", delimiter=",", skiprows=1))
            probs.append(p)
    y, p = np.concatenate(labels), np.concatenate(probs)
    for j in (1, 2):  # mid and wall rearing: the body shortens, the forepaws rise
        prevalence, score = y[:, j].mean(), average_precision_score(y[:, j], p[:, j])
        assert score > max(2 * prevalence, prevalence + 0.2), (behaviors[j], score, prevalence)
    out = tmp_path / "out"
    result = cli("predict", "--run", run, "--videos", new / "videos", "--pose", new / "pose",
                 "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert (cache / "pose" / "new_000.h5").is_file()
    rows = (out / "new_000_predictions.csv").read_text().splitlines()
    assert len(rows) == 81
