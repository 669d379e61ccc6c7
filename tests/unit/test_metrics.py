"""Metrics against hand computations and independent brute force."""

import math
import warnings

import numpy as np
import pytest

from mouse_pipeline.metrics import (
    binary_metrics,
    bout_metrics,
    bouts_from_binary,
    choose_threshold,
    mean_pr_auc,
    pr_curve,
    summarize_folds,
)


def test_binary_metrics_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, -1, -1])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.05, 0.99, 0.0])
    m = binary_metrics(y, p, threshold=0.5)
    # labelled: predictions 1,1,0,1,0,0,0 -> tp 2, fp 1, fn 1, tn 3
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 3)
    assert m["n_frames"] == 7 and m["n_positive"] == 3
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["prevalence"] == pytest.approx(3 / 7)
    # ROC-AUC: positive/negative pairs ranked correctly. Positives .9 .6 .2, negatives .7 .1 .3 .05
    pairs = [(a > b) for a in (0.9, 0.6, 0.2) for b in (0.7, 0.1, 0.3, 0.05)]
    assert m["roc_auc"] == pytest.approx(sum(pairs) / len(pairs))
    # AP: ranks .9(+) .7(-) .6(+) .3(-) .2(+) ... -> sum of precision at each positive / 3
    assert m["pr_auc"] == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)


def test_binary_metrics_degenerate_cases_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        no_pos = binary_metrics(np.zeros(5), np.full(5, 0.2), 0.5)
        no_pred = binary_metrics(np.array([1, 0, 0]), np.zeros(3), 0.5)
        none = binary_metrics(np.full(4, -1), np.full(4, 0.7), 0.5)
    assert math.isnan(no_pos["pr_auc"]) and math.isnan(no_pos["roc_auc"])
    assert math.isnan(no_pos["recall"]) and math.isnan(no_pos["f1"])
    assert no_pos["accuracy"] == 1.0
    assert math.isnan(no_pred["precision"]) and no_pred["f1"] == 0.0 and no_pred["recall"] == 0
    assert none["n_frames"] == 0 and none["tp"] == 0
    assert all(
        math.isnan(none[k])
        for k in ("accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc", "prevalence")
    )


def test_bouts_from_binary():
    assert bouts_from_binary(np.array([1, 1, 0, -1, 1, 0, 1])) == [(0, 1), (4, 4), (6, 6)]
    assert bouts_from_binary(np.array([], dtype=int)) == []
    assert bouts_from_binary(np.zeros(4)) == []


def seq(n, *runs):
    b = np.zeros(n, dtype=np.int8)
    for s, e in runs:
        b[s : e + 1] = 1
    return b


def test_bout_metrics_hand_example():
    true = seq(40, (0, 9), (20, 29), (35, 36))
    # (0,7): IoU 8/10 match; (18,29): IoU 10/12 match; (33,34) vs (35,36) IoU 0; (12,13) none
    pred = seq(40, (0, 7), (12, 13), (18, 29), (33, 34))
    m = bout_metrics(true, pred, fps=10)
    assert (m["n_true"], m["n_pred"], m["n_matched"]) == (3, 4, 2)
    assert m["precision"] == pytest.approx(2 / 4) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 2 / 7)
    assert m["count_error"] == 1
    assert m["duration_error_s"] == pytest.approx((8 + 2 + 12 + 2 - 22) / 10)
    assert bout_metrics(true, pred)["duration_error_s"] == pytest.approx(2.0)


def test_bout_matching_one_to_one_greedy():
    true = seq(30, (0, 9))
    pred = seq(30, (0, 8), (10, 10))  # only (0,8) overlaps: one match, one false bout
    assert bout_metrics(true, pred)["n_matched"] == 1
    # one prediction spanning two true bouts can match at most one of them
    true2 = seq(30, (0, 9), (11, 12))
    pred2 = seq(30, (0, 12))
    m = bout_metrics(true2, pred2)
    assert m["n_matched"] == 1 and m["recall"] == 0.5  # IoU 10/13 and 2/13


def test_bout_metrics_empty():
    m = bout_metrics(np.zeros(5), np.zeros(5))
    assert m["n_true"] == m["n_pred"] == 0 and math.isnan(m["f1"]) and math.isnan(m["precision"])


def test_pr_curve_masks_unlabelled():
    precision, recall = pr_curve(np.array([1, 0, -1, 1]), np.array([0.9, 0.5, 0.99, 0.1]))
    assert recall[0] == 1.0 and precision[-1] == 1.0
    assert precision[0] == pytest.approx(2 / 3)  # all labelled frames predicted positive
    assert pr_curve(np.zeros(3), np.ones(3))[0].size == 0


def brute_force_f1(y, p, threshold):
    pred = p >= threshold
    tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
    return 2 * tp / (2 * tp + fp + fn)


@pytest.mark.parametrize("seed", range(5))
def test_choose_threshold_maximises_f1(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(300) < 0.2).astype(int)
    p = np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1).round(2)  # ties on purpose
    threshold = choose_threshold(y, p)
    best = max(brute_force_f1(y, p, t) for t in np.linspace(0, 1, 1001))
    assert brute_force_f1(y, p, threshold) == pytest.approx(best)
    assert threshold not in set(p.tolist())  # halfway between scores


def test_choose_threshold_no_positive(caplog):
    assert choose_threshold(np.zeros(4), np.full(4, 0.9)) == 0.5
    assert "falls back to 0.5" in caplog.text


def test_summarize_folds():
    rows = [
        {"behavior": "g", "f1": 0.5, "tp": 3},
        {"behavior": "g", "f1": 0.7, "tp": 5},
        {"behavior": "g", "f1": float("nan"), "tp": 4},
    ]
    out = summarize_folds(rows)
    assert "behavior" not in out
    assert out["f1"]["mean"] == pytest.approx(0.6) and out["f1"]["n"] == 2
    assert out["f1"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert out["tp"]["mean"] == 4.0
    assert math.isnan(summarize_folds([{"f1": 0.3}])["f1"]["std"])


def test_mean_pr_auc_pools_videos_and_skips_behaviours_without_positives():
    y1 = np.array([[1, 0], [0, 0], [-1, 0]])
    y2 = np.array([[0, 0], [1, 0]])
    p1 = np.array([[0.9, 0.1], [0.8, 0.2], [0.0, 0.3]])
    p2 = np.array([[0.7, 0.4], [0.6, 0.5]])
    # behaviour 0 pooled over labelled frames: scores .9(+) .8(-) .7(-) .6(+) -> AP (1 + 2/4) / 2
    assert mean_pr_auc([y1, y2], [p1, p2]) == pytest.approx(0.75)
    assert math.isnan(mean_pr_auc([y1[:, 1:]], [p1[:, 1:]]))
