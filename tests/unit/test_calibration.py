"""Platt maps of ``train.auto.calibrate`` (:mod:`mouse_pipeline.calibration`)."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mouse_pipeline.calibration import apply_platt, fit_platt, logit


def _logistic_data(a, b, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.99, n)
    truth = 1 / (1 + np.exp(-(a * logit(p) + b)))
    return (rng.random(n) < truth).astype(np.int8), p


def test_the_fit_recovers_a_known_map():
    y, p = _logistic_data(2.0, -1.0)
    a, b = fit_platt(y, p)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-1.0, abs=0.1)


def test_unlabelled_frames_are_left_out():
    y, p = _logistic_data(0.5, 1.0)
    y2, p2 = np.concatenate([y, -np.ones(5000, np.int8)]), np.concatenate([p, np.full(5000, 0.999)])
    assert fit_platt(y2, p2) == pytest.approx(fit_platt(y, p))


def test_no_map_from_one_class_or_a_wrong_way_ranking():
    p = np.linspace(0.01, 0.99, 100)
    assert fit_platt(np.zeros(100, np.int8), p) is None
    assert fit_platt(np.full(100, -1, np.int8), p) is None
    assert fit_platt((p < 0.5).astype(np.int8), p) is None  # higher probability, fewer positives


def test_perfectly_separated_held_out_predictions_give_a_finite_map():
    p = np.linspace(0.01, 0.99, 200)
    a, b = fit_platt((p > 0.7).astype(np.int8), p)
    assert np.isfinite(a) and np.isfinite(b) and a > 0


def test_the_map_keeps_each_column_s_ranking_and_dtype():
    rng = np.random.default_rng(1)
    p = rng.random((500, 3)).astype(np.float32)
    y = (rng.random((500, 3)) < p).astype(np.int8)
    q = apply_platt(p, [(3.0, -2.0), None, (0.2, 1.0)])
    assert q.dtype == np.float32 and q.shape == p.shape
    np.testing.assert_array_equal(q[:, 1], p[:, 1])
    for j in (0, 2):
        assert np.array_equal(np.argsort(q[:, j], kind="stable"), np.argsort(p[:, j], kind="stable"))
        assert average_precision_score(y[:, j], q[:, j]) == pytest.approx(average_precision_score(y[:, j], p[:, j]))
    with pytest.raises(ValueError, match="2 calibration maps for 3"):
        apply_platt(p, [None, None])


def test_calibrating_each_fold_pools_two_differently_scaled_folds_better():
    """Two folds whose scores rank within the fold equally well, one on a squashed scale: pooled
    raw, the squashed fold's positives rank below the other's negatives; each mapped by a fit
    on data like its own (not its own frames), the pooled PR-AUC comes back up."""
    ys, raw, mapped = [], [], []
    for k, squash in enumerate((1.0, 0.15)):
        y_fit, p_fit = _logistic_data(1.0 / squash, -1.0 / squash + 0.5, seed=10 + k)
        y, p = _logistic_data(1.0 / squash, -1.0 / squash + 0.5, seed=20 + k)
        m = fit_platt(y_fit, p_fit)
        ys.append(y), raw.append(p), mapped.append(apply_platt(p[:, None], [m])[:, 0])
    y = np.concatenate(ys)
    pooled_raw, pooled_mapped = (average_precision_score(y, np.concatenate(q)) for q in (raw, mapped))
    assert pooled_mapped > pooled_raw + 0.02
