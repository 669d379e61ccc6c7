"""``train.heads: per_behavior`` end to end through the CLI: train --final, report, predict."""

import json

import cv2
import numpy as np
import pytest

from tests.integration.runs import BACKBONE, BEHAVIORS, cli_ok, read_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(run_dataset, tmp_path_factory):
    """A per-behaviour TCN run (two folds and the final model), reported."""
    run = run_dataset.train(tmp_path_factory.mktemp("per_behavior") / "run",
                            "train.models=[tcn]", "train.heads=per_behavior")
    cli_ok("report", "--run", run, "--quiet")
    return run


def decoded_frames(path):
    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


def test_one_model_file_per_behaviour_in_every_fold_and_the_final(run):
    folds = json.loads((run / "folds.json").read_text())["folds"]
    assert len(folds) == 2
    for name in [f"fold_{fold['index']}" for fold in folds] + ["final"]:
        folder = run / BACKBONE / "tcn" / name
        assert sorted(p.name for p in folder.glob("*.keras")) == sorted(
            f"model_{b}.keras" for b in BEHAVIORS), name


def test_report_scores_every_behaviour_in_every_fold(run):
    rows = read_csv(run / "metrics.csv")
    mine = [r for r in rows if r["model"] == f"{BACKBONE}/tcn"]
    assert {r["behavior"] for r in mine} == set(BEHAVIORS)
    for b in BEHAVIORS:
        folds = {r["fold"] for r in mine if r["behavior"] == b and r["row"] == "fold"}
        kinds = {r["row"] for r in mine if r["behavior"] == b}
        assert folds == {"0", "1"} and {"pooled", "mean"} <= kinds, (b, folds, kinds)
        pr_auc = [float(r["pr_auc"]) for r in mine if r["behavior"] == b and r["row"] == "pooled"]
        assert pr_auc and all(0 <= v <= 1 for v in pr_auc)


def test_predict_gives_each_behaviour_a_probability_for_every_frame(run_dataset, run, tmp_path):
    result = run_dataset.predict(run, tmp_path)  # the run's only model: no --model needed
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "new_000_predictions.csv")
    assert len(rows) == decoded_frames(run_dataset.new / "videos" / "new_000.mp4")
    assert [int(r["frame"]) for r in rows] == list(range(len(rows)))
    probs = np.array([[float(r[f"p_{b}"]) for b in BEHAVIORS] for r in rows])
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()
    assert probs.std(axis=0).min() > 0  # not a constant: every head was applied to the frames
    assert all(r[b] in ("0", "1") for r in rows for b in BEHAVIORS)
