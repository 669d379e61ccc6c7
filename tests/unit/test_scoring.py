"""Scoring external predictions, and the tables predict writes (no TensorFlow needed)."""

import csv

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mouse_pipeline.errors import InputError
from mouse_pipeline.predict import BOUT_COLUMNS, bouts_table, summary_rows
from mouse_pipeline.scoring import format_table, parse_mapping, score_files, write_rows_csv


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def external(tmp_path):
    """A thesis-style label file and another tool's output in the fork's layout."""
    rng = np.random.default_rng(0)
    n = 500
    y = np.zeros((n, 3), int)
    y[50:120, 0] = 1
    y[200:210, 1] = 1
    for s in range(300, 480, 40):
        y[s:s + 12, 2] = 1
    p = np.clip(0.6 * y + rng.normal(0.2, 0.2, y.shape), 0, 1)
    labels = write_csv(tmp_path / "labels.csv", ["grooming", "rearing_mig", "rearing_paret"], y.tolist())
    preds = write_csv(tmp_path / "preds.csv",
                      ["", "grooming", "rearing_mig", "rearing_paret", "g_prediction", "mr_prediction", "wr_prediction"],
                      [[i, *y[i], *p[i]] for i in range(n)])
    return labels, preds, y, p


def test_score_reproduces_sklearn_average_precision(external, tmp_path):
    labels, preds, y, p = external
    rows = score_files(labels, preds,
                       columns="grooming=g_prediction,mid_rearing=mr_prediction,wall_rearing=wr_prediction",
                       label_columns="rearing_mig=mid_rearing,rearing_paret=wall_rearing",
                       csv_out=tmp_path / "out.csv")
    assert [r["behavior"] for r in rows] == ["grooming", "mid_rearing", "wall_rearing"]
    for j, r in enumerate(rows):
        assert r["pr_auc"] == pytest.approx(average_precision_score(y[:, j], p[:, j]), abs=1e-9)
        pred = p[:, j] >= 0.5
        assert r["tp"] == int((pred & (y[:, j] == 1)).sum())
    with open(tmp_path / "out.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 3
    table = format_table(rows)
    assert "pr_auc" in table.splitlines()[0] and "wall_rearing" in table


def test_score_errors_name_file_and_column(external, tmp_path):
    labels, preds, *_ = external
    with pytest.raises(InputError, match=r"preds\.csv: no column 'nope'; columns found: grooming"):
        score_files(labels, preds, columns="grooming=nope",
                    label_columns="rearing_mig=mid_rearing,rearing_paret=wall_rearing")
    short = write_csv(tmp_path / "short.csv", ["g"], [[0.1]] * 10)
    with pytest.raises(InputError, match="10 frames of predictions but .*labels.csv has 500"):
        score_files(labels, short, columns="grooming=g")
    bad = write_csv(tmp_path / "bad.csv", ["g"], [[0.1]] * 3 + [["x"]])
    with pytest.raises(InputError, match=r"bad\.csv: line 5, column 'g': expected a probability or 0/1, got 'x'"):
        score_files(labels, bad, columns="grooming=g")
    with pytest.raises(InputError, match="expected name=column pairs"):
        parse_mapping("grooming", "--columns")


def test_bouts_table_and_summary():
    b = np.zeros((20, 2), np.int8)
    b[2:5, 0] = 1
    b[10:20, 0] = 1
    rows = bouts_table(b, ("a", "b"), fps=10.0)
    assert rows == [
        {"behavior": "a", "start_frame": 2, "end_frame": 4, "start_s": 0.2, "end_s": 0.5, "duration_s": 0.3},
        {"behavior": "a", "start_frame": 10, "end_frame": 19, "start_s": 1.0, "end_s": 2.0, "duration_s": 1.0},
    ]
    s = summary_rows("v", b, ("a", "b"), fps=10.0)
    assert s[0] == {"video": "v", "behavior": "a", "bout_count": 2, "total_s": 1.3, "percent_time": 65.0,
                    "latency_s": 0.2, "mean_bout_s": 0.65}
    assert s[1]["bout_count"] == 0 and np.isnan(s[1]["latency_s"])


def test_empty_bouts_file_still_has_a_header(tmp_path):
    write_rows_csv(tmp_path / "b.csv", [], BOUT_COLUMNS)
    assert (tmp_path / "b.csv").read_text().strip() == ",".join(BOUT_COLUMNS)
