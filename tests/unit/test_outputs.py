"""The tables predict and report write: cell by cell, as a spreadsheet or pandas reads them
(missing values are empty cells, every per-video table names its video), and predict's
``predictions.json`` sidecar. No TensorFlow: the writers are called with known arrays."""

import csv
import json
import math
from datetime import datetime

import numpy as np
import pytest

from mouse_pipeline import __version__
from mouse_pipeline.predict import (
    BOUT_COLUMNS,
    SIDECAR,
    SUMMARY_COLUMNS,
    bouts_table,
    summary_rows,
    write_folder_outputs,
    write_predictions_csv,
    write_video_outputs,
)
from mouse_pipeline.predictor import Predictor
from mouse_pipeline.report.scores import CSV_COLUMNS, metrics_csv_rows
from mouse_pipeline.runs import FinalModel
from mouse_pipeline.scoring import write_rows_csv

BEHAVIORS = ("a", "b")


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def binary():
    b = np.zeros((20, 2), np.int8)
    b[2:5, 0] = 1
    b[10:20, 0] = 1
    return b


def test_missing_values_are_empty_cells(tmp_path):
    rows = [{"a": math.nan, "b": None, "c": np.float64("nan"), "d": np.float32("nan"), "e": 0.0,
             "f": math.inf, "g": "x"}]
    write_rows_csv(tmp_path / "t.csv", rows)
    assert read_csv(tmp_path / "t.csv") == [["a", "b", "c", "d", "e", "f", "g"],
                                            ["", "", "", "", "0.0", "inf", "x"]]


def test_bouts_table_names_the_video_and_summary_leaves_missing_empty(tmp_path):
    rows = bouts_table(binary(), BEHAVIORS, fps=10.0, video="v")
    assert rows == [
        {"video": "v", "behavior": "a", "start_frame": 2, "end_frame": 4, "start_s": 0.2, "end_s": 0.5,
         "duration_s": 0.3},
        {"video": "v", "behavior": "a", "start_frame": 10, "end_frame": 19, "start_s": 1.0, "end_s": 2.0,
         "duration_s": 1.0},
    ]
    s = summary_rows("v", binary(), BEHAVIORS, fps=10.0)
    assert s[0] == {"video": "v", "behavior": "a", "bout_count": 2, "total_s": 1.3, "percent_time": 65.0,
                    "latency_s": 0.2, "mean_bout_s": 0.65}
    assert s[1]["bout_count"] == 0 and np.isnan(s[1]["latency_s"])
    write_rows_csv(tmp_path / "summary.csv", s, SUMMARY_COLUMNS)
    assert read_csv(tmp_path / "summary.csv") == [
        SUMMARY_COLUMNS,
        ["v", "a", "2", "1.3", "65.0", "0.2", "0.65"],
        ["v", "b", "0", "0.0", "0.0", "", ""],  # no bout: latency and mean length are missing
    ]


def test_empty_bouts_file_still_has_a_header(tmp_path):
    write_rows_csv(tmp_path / "b.csv", [], BOUT_COLUMNS)
    assert (tmp_path / "b.csv").read_text().strip() == ",".join(BOUT_COLUMNS)


def test_predictions_csv_cell_by_cell(tmp_path):
    probs = np.array([[0.1, 0.96], [0.523456, math.nan], [1.0, 0.0]])
    bins = np.array([[0, 1], [1, 0], [1, 0]], np.int8)
    write_predictions_csv(tmp_path / "p.csv", probs, bins, BEHAVIORS, fps=30.0, video="m3")
    assert read_csv(tmp_path / "p.csv") == [
        ["video", "frame", "time_s", "p_a", "p_b", "a", "b"],
        ["m3", "0", "0.0000", "0.10000", "0.96000", "0", "1"],
        ["m3", "1", "0.0333", "0.52346", "", "1", "0"],
        ["m3", "2", "0.0667", "1.00000", "0.00000", "1", "0"],
    ]


def predictor(tmp_path):
    """Two final models; behaviour a from the first, b the mean of both (as predict's
    per-behaviour choice makes it)."""
    members = tuple(FinalModel("resnet50v2", kind, tmp_path / "run" / kind / "final", BEHAVIORS, (0.5, 0.5),
                               (0, 0), (1, 1), 32, 8, (), None) for kind in ("lstm", "tcn"))
    return Predictor("per-behavior", members, (0, None), (0.4, 0.55), (2, 0), (3, 1))


def test_folder_outputs_combine_the_videos_and_the_sidecar_comes_last(tmp_path):
    model, out = predictor(tmp_path), tmp_path / "out"
    out.mkdir()
    videos, all_bouts, summary = [], [], []
    for vid, fps, shift in (("v1", 10.0, 0), ("v2", 25.0, 3)):
        bins = np.roll(binary(), shift, axis=0)
        probs = bins * 0.8 + 0.1
        files, bouts = write_video_outputs(out, vid, probs, bins, BEHAVIORS, model.name, fps)
        assert [f.name for f in files] == [f"{vid}_predictions.csv", f"{vid}_bouts.csv", f"{vid}_ethogram.png"]
        all_bouts += bouts
        summary += summary_rows(vid, bins, BEHAVIORS, fps)
        videos.append({"video": vid, "source": f"/videos/{vid}.mp4", "fps": fps, "resampled_to_fps": None,
                       "n_frames": 20, "files": [f.name for f in files]})
    write_folder_outputs(out, tmp_path / "run", model.record(), all_bouts, summary, videos)
    per_video = [read_csv(out / f"{v}_bouts.csv") for v in ("v1", "v2")]
    assert all(t[0] == BOUT_COLUMNS for t in per_video)
    assert read_csv(out / "bouts.csv") == [BOUT_COLUMNS] + per_video[0][1:] + per_video[1][1:]
    assert per_video[1][1] == ["v2", "a", "0", "2", "0.0", "0.12", "0.12"]  # rolled: frames 0-2 at 25 fps
    assert [r[0] for r in read_csv(out / "summary.csv")[1:]] == ["v1", "v1", "v2", "v2"]
    meta = json.loads((out / SIDECAR).read_text())
    created = datetime.fromisoformat(meta.pop("created"))
    assert created.utcoffset().total_seconds() == 0
    assert meta == {
        "version": 1, "package_version": __version__, "run": str((tmp_path / "run").resolve()),
        "model": "per-behavior", "members": ["resnet50v2/lstm", "resnet50v2/tcn"],
        "streams": {"resnet50v2/lstm": ["resnet50v2"], "resnet50v2/tcn": ["resnet50v2"]},
        "behaviors": {"a": {"model": "resnet50v2/lstm", "threshold": 0.4, "max_gap": 2, "min_len": 3},
                      "b": {"model": "ensemble", "threshold": 0.55, "max_gap": 0, "min_len": 1}},
        "files": ["bouts.csv", "summary.csv"], "videos": videos}
    last = (out / SIDECAR).stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= last for p in out.iterdir())


def metric_row(row, fold, stage="raw", **extra):
    return {"model": "m", "behavior": "a", "row": row, "fold": fold, "stage": stage,
            "pr_auc": 0.5, "f1": math.nan, **extra}


def test_metrics_csv_has_numeric_folds_and_a_row_kind(tmp_path):
    metrics = {"folds": [metric_row("fold", 0, threshold=0.3), metric_row("fold", 1, "post", threshold=0.4,
                                                                          max_gap=2, min_len=3)],
               "pooled": [metric_row("pooled", "pooled")],
               "mean_std": [metric_row("mean", "mean"), metric_row("std", "std")]}
    write_rows_csv(tmp_path / "metrics.csv", metrics_csv_rows(metrics), list(CSV_COLUMNS))
    table = read_csv(tmp_path / "metrics.csv")
    assert table[0] == list(CSV_COLUMNS)
    col = {name: i for i, name in enumerate(table[0])}
    picked = [[r[col[k]] for k in ("row", "fold", "stage", "pr_auc", "f1", "threshold", "max_gap", "min_len",
                                   "accuracy")] for r in table[1:]]
    assert picked == [
        ["fold", "0", "raw", "0.5", "", "0.3", "", "", ""],
        ["fold", "1", "post", "0.5", "", "0.4", "2", "3", ""],
        ["pooled", "", "raw", "0.5", "", "", "", "", ""],
        ["mean", "", "raw", "0.5", "", "", "", "", ""],
        ["std", "", "raw", "0.5", "", "", "", "", ""],
    ]
    assert all(len(r) == len(CSV_COLUMNS) for r in table)


@pytest.mark.parametrize("value", [math.nan, None])
def test_no_csv_writer_writes_nan(tmp_path, value):
    probs = np.array([[0.5, 0.5]])
    write_predictions_csv(tmp_path / "p.csv", probs, np.array([[1, 0]], np.int8), BEHAVIORS, 10.0, "v")
    write_rows_csv(tmp_path / "r.csv", [{"x": value}])
    for name in ("p.csv", "r.csv"):
        assert "nan" not in (tmp_path / name).read_text().lower()
