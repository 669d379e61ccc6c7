"""The baseline and transformer heads end to end through the CLI: train --final, report, predict."""

import numpy as np
import pytest

from tests.integration.runs import BACKBONE, BEHAVIORS, cli_ok, read_csv

pytestmark = pytest.mark.slow

HEADS = ("linear", "mlp", "transformer")


@pytest.fixture(scope="module")
def run(run_dataset, tmp_path_factory):
    """A run of the three heads (two folds and the final models), reported."""
    run = run_dataset.train(tmp_path_factory.mktemp("heads") / "run", f"train.models=[{', '.join(HEADS)}]",
                            "train.linear.delta=true", "train.mlp.units=8", "train.transformer.layers=1",
                            "train.transformer.width=8", "train.transformer.heads=2",
                            "train.transformer.ff=16")
    cli_ok("report", "--run", run, "--quiet")
    return run


def test_the_report_scores_and_lists_every_head(run):
    rows = read_csv(run / "metrics.csv")
    pooled = {(r["model"], r["behavior"]) for r in rows if r["row"] == "pooled"}
    for head in HEADS:
        assert {(f"{BACKBONE}/{head}", b) for b in BEHAVIORS} <= pooled, head
    report = (run / "report.md").read_text()
    for head in HEADS:
        assert f"{BACKBONE}/{head}" in report, head
    assert f"**Models:** {', '.join(f'{BACKBONE}/{h}' for h in HEADS)}" in report


@pytest.mark.parametrize("head", HEADS)
def test_predict_applies_each_heads_final_model(run_dataset, run, tmp_path, head):
    result = run_dataset.predict(run, tmp_path, "--model", f"{BACKBONE}/{head}")
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "new_000_predictions.csv")
    probs = np.array([[float(r[f"p_{b}"]) for b in BEHAVIORS] for r in rows])
    assert len(rows) > 0 and np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all()
