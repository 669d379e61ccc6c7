"""The whole pipeline through the CLI: synth -> extract -> train -> report -> predict -> score."""

import csv
import json

import h5py
import numpy as np
import pytest

from mouse_pipeline.folds import load_folds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run every stage once on 4 tiny synthetic videos (shared by the tests below)."""
    from click.testing import CliRunner

    from stages.cli import main

    root = tmp_path_factory.mktemp("e2e")

    def cli(*args):
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    cli("synth", "--out", root / "data", "--videos", 4, "--frames", 160, "--size", 64, "--fps", 5, "--seed", 3)
    cli("synth", "--out", root / "new", "--videos", 1, "--frames", 90, "--size", 64, "--fps", 5, "--seed", 4, "--prefix", "new")
    sets = ["--set", f"data.videos={root / 'data' / 'videos'}",
            "--set", f"data.labels={root / 'data' / 'labels'}",
            "--set", f"extract.cache={root / 'cache'}",
            "--set", f"data.crop.pose={root / 'data' / 'pose'}", "--set", "data.crop.size=32",
            "--set", "extract.backbones=[resnet50v2]", "--set", "extract.weights=random",
            "--set", "extract.input_size=32", "--set", f"train.run={root / 'run'}",
            "--set", "train.epochs=2", "--set", "train.window.length=32",
            "--set", "train.window.stride=16", "--set", "train.lstm.units=8",
            "--set", "train.tcn.filters=8", "--set", "train.tcn.dilations=[1, 2, 4]"]
    out = {"root": root, "sets": sets}
    out["extract"] = cli("extract", "--config", "configs/demo.yaml", *sets, "--quiet")
    out["extract2"] = cli("extract", "--config", "configs/demo.yaml", *sets, "--quiet")
    out["train"] = cli("train", "--config", "configs/demo.yaml", *sets, "--final", "--quiet")
    out["report"] = cli("report", "--run", root / "run", "--quiet")
    out["predict"] = cli("predict", "--run", root / "run", "--videos", root / "new" / "videos", "--pose", root / "new" / "pose",
                         "--out", root / "pred", "--quiet")
    return out


def test_extract_then_noop(pipeline):
    root = pipeline["root"]
    files = sorted((root / "cache" / "resnet50v2").glob("mouse_*.h5"))  # predict adds new_000
    assert len(files) == 4
    with h5py.File(files[0]) as f:
        assert f["embeddings"].shape == (160, 2048)
    assert "up to date" in pipeline["extract2"].output


def test_train_writes_folds_without_leakage_and_oof_for_every_frame(pipeline):
    run = pipeline["root"] / "run"
    folds = load_folds(run / "folds.json")
    assert len(folds) == 4
    seen = {}
    for fold in folds:
        assert not set(fold.test) & (set(fold.train) | set(fold.val))
        for model in ("lstm", "tcn"):
            with h5py.File(run / "resnet50v2" / model / f"fold_{fold.index}" / "probs.h5") as f:
                for vid in fold.test:
                    p = f[f"test/{vid}"][()]
                    assert p.shape == (160, 3) and np.isfinite(p).all()
                    seen.setdefault(model, set()).add(vid)
    assert all(len(v) == 4 for v in seen.values())
    assert (run / "resnet50v2" / "lstm" / "final" / "model.keras").is_file()


def test_report_files_hold_the_metrics(pipeline):
    run = pipeline["root"] / "run"
    for name in ("report.html", "report.md", "metrics.csv", "metrics.json"):
        assert (run / name).is_file()
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    models = {r["model"] for r in rows}
    assert {"resnet50v2/lstm", "resnet50v2/tcn", "ensemble"} <= models
    assert "report.html" in pipeline["report"].output


def test_predict_outputs_agree(pipeline):
    pred = pipeline["root"] / "pred"
    with open(pred / "new_000_predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 90
    assert list(rows[0])[:3] == ["video", "frame", "time_s"] and {r["video"] for r in rows} == {"new_000"}
    with open(pred / "new_000_bouts.csv", newline="") as fh:
        bouts = list(csv.DictReader(fh))
    # bouts agree exactly with the 0/1 columns
    for b in ("grooming", "mid_rearing", "wall_rearing"):
        col = np.array([int(r[b]) for r in rows])
        rebuilt = np.zeros_like(col)
        for r in bouts:
            if r["behavior"] == b:
                rebuilt[int(r["start_frame"]):int(r["end_frame"]) + 1] = 1
        np.testing.assert_array_equal(col, rebuilt)
    assert (pred / "new_000_ethogram.png").stat().st_size > 1000
    with open(pred / "summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    assert {r["behavior"] for r in summary} == {"grooming", "mid_rearing", "wall_rearing"}
    with open(pred / "bouts.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == bouts  # one video: the combined table is its own
    meta = json.loads((pred / "predictions.json").read_text())
    assert [v["video"] for v in meta["videos"]] == ["new_000"] and meta["videos"][0]["n_frames"] == 90
    assert set(meta["behaviors"]) == {"grooming", "mid_rearing", "wall_rearing"}
    assert all({"threshold", "max_gap", "min_len"} <= set(v) for v in meta["behaviors"].values())
    assert meta["run"] == str((pipeline["root"] / "run").resolve()) and meta["videos"][0]["fps"] > 0
    made = next(iter(meta["extract"].values()))  # what made the embeddings the models read
    assert made["weights"] == "random" and made["precision"] in ("float32", "bfloat16") and made["input_size"] > 0


def test_score_on_predictions_of_the_run(pipeline, run_cli, tmp_path):
    root = pipeline["root"]
    labels = root / "new" / "labels" / "new_000.csv"
    preds = root / "pred" / "new_000_predictions.csv"
    result = run_cli("score", "--labels", labels, "--predictions", preds, "--csv", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    assert "pr_auc" in result.output and (tmp_path / "s.csv").is_file()


def test_suggest_on_a_pose_cropped_run_reads_the_new_videos_pose_from_pose(pipeline, run_cli, tmp_path):
    root = pipeline["root"]
    run_cli("synth", "--out", tmp_path / "other", "--videos", 1, "--frames", 60, "--size", 64, "--fps", 5,
            "--seed", 5, "--prefix", "other", "--quiet")
    videos, out = tmp_path / "other" / "videos", tmp_path / "s.csv"
    # the run's own pose folder has no file for this video: refused, nothing extracted or written
    result = run_cli("suggest", "--run", root / "run", "--videos", videos, "--out", out, "--quiet")
    assert result.exit_code == 2 and "other_000" in result.output and not out.exists()
    assert not (root / "cache" / "resnet50v2" / "other_000.h5").exists()
    result = run_cli("suggest", "--run", root / "run", "--videos", videos, "--pose", tmp_path / "other" / "pose",
                     "--minutes", 0.1, "--window-s", 2, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert len(list(csv.DictReader(out.open()))) == 3  # 6 s of 2 s windows
    assert (root / "cache" / "resnet50v2" / "other_000.h5").is_file()


def test_rerun_with_same_seed_gives_same_probabilities(pipeline, run_cli):
    root = pipeline["root"]
    sets = pipeline["sets"]
    result = run_cli("train", "--config", "configs/demo.yaml", *sets, "--set", "train.models=[lstm]",
                     "--run", root / "run2", "--quiet")
    assert result.exit_code == 0, result.output
    for fold in load_folds(root / "run" / "folds.json"):
        with h5py.File(root / "run" / "resnet50v2" / "lstm" / f"fold_{fold.index}" / "probs.h5") as a, \
                h5py.File(root / "run2" / "resnet50v2" / "lstm" / f"fold_{fold.index}" / "probs.h5") as b:
            for vid in fold.test:
                np.testing.assert_array_equal(a[f"test/{vid}"][()], b[f"test/{vid}"][()])
