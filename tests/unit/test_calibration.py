"""Platt maps of ``train.auto.calibrate`` (:mod:`mouse_pipeline.calibration`)."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mouse_pipeline.calibration import MAX_SLOPE, apply_platt, fit_platt, logit


def _logistic_data(a, b, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.99, n)
    truth = 1 / (1 + np.exp(-(a * logit(p) + b)))
    return (rng.random(n) < truth).astype(np.int8), p


def test_the_fit_recovers_a_known_map():
    y, p = _logistic_data(0.6, -1.0)
    a, b = fit_platt(y, p)
    assert a == pytest.approx(0.6, abs=0.05) and b == pytest.approx(-1.0, abs=0.1)


def test_the_slope_is_at_most_one_and_the_intercept_is_fitted_at_it():
    y, p = _logistic_data(2.0, -1.0)
    a, b = fit_platt(y, p)
    assert a == MAX_SLOPE == 1.0
    best = min(np.linspace(b - 1, b + 1, 201), key=lambda c: _cross_entropy(y, 1 / (1 + np.exp(-(logit(p) + c)))))
    assert b == pytest.approx(best, abs=0.02)


def _cross_entropy(y, q):
    return -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))


def test_unlabelled_frames_are_left_out():
    y, p = _logistic_data(0.5, 1.0)
    y2, p2 = np.concatenate([y, -np.ones(5000, np.int8)]), np.concatenate([p, np.full(5000, 0.999)])
    assert fit_platt(y2, p2) == pytest.approx(fit_platt(y, p))


def test_no_map_from_one_class_or_a_wrong_way_ranking():
    p = np.linspace(0.01, 0.99, 100)
    assert fit_platt(np.zeros(100, np.int8), p) is None
    assert fit_platt(np.full(100, -1, np.int8), p) is None
    assert fit_platt((p < 0.5).astype(np.int8), p) is None  # higher probability, fewer positives


def test_perfectly_separated_or_saturated_predictions_give_a_finite_map():
    p = np.linspace(0.01, 0.99, 200)
    a, b = fit_platt((p > 0.7).astype(np.int8), p)
    assert np.isfinite(a) and np.isfinite(b) and 0 < a <= 1
    # a model sure of every frame (logits near +-16), right on most: a finite, softening map
    rng = np.random.default_rng(3)
    y = (rng.random(5000) < 0.2).astype(np.int8)
    right = rng.random(5000) < 0.8
    p = np.where(right == (y == 1), 1 - 1e-7, 1e-7).astype(np.float32)
    a, b = fit_platt(y, p)
    assert 0 < a < 0.2 and np.isfinite(b)
    q = apply_platt(p[:, None], [(a, b)])[:, 0]
    high = p == p.max()  # mapped to the held-out frequency of the behaviour, not to certainty
    assert q[high][0] == pytest.approx(y[high].mean(), abs=0.02)
    assert q[~high][0] == pytest.approx(y[~high].mean(), abs=0.02)


def test_mapped_probabilities_near_0_and_1_stay_apart():
    """Distinct float32 probabilities right at 0 and 1 stay distinct (and in order) after a map."""
    p = np.array([0.0, 1e-30, 1e-12, 1e-7, 0.5, 1 - 1e-6, np.nextafter(np.float32(1), np.float32(0)), 1.0],
                 np.float32)[:, None]
    for ab in [(1.0, 3.0), (1.0, -3.0), (0.3, 0.0)]:
        q = apply_platt(p, [ab])[:, 0]
        assert np.all(np.diff(q) > 0), ab


def test_the_map_keeps_each_column_s_ranking_in_float64():
    rng = np.random.default_rng(1)
    p = rng.random((500, 3)).astype(np.float32)
    y = (rng.random((500, 3)) < p).astype(np.int8)
    q = apply_platt(p, [(0.9, -2.0), None, (0.2, 1.0)])
    assert q.dtype == np.float64 and q.shape == p.shape
    np.testing.assert_array_equal(q[:, 1], p[:, 1])
    for j in (0, 2):
        assert np.array_equal(np.argsort(q[:, j], kind="stable"), np.argsort(p[:, j], kind="stable"))
        assert average_precision_score(y[:, j], q[:, j]) == pytest.approx(average_precision_score(y[:, j], p[:, j]))
    with pytest.raises(ValueError, match="2 calibration maps for 3"):
        apply_platt(p, [None, None])


def test_calibrating_each_fold_pools_two_differently_scaled_folds_better():
    """Two folds that rank their frames equally well, one model overconfident (its frames'
    truth is sigmoid(0.25 logit p - 1)), one calibrated: pooled raw, the overconfident fold's
    near-1 negatives rank above the other's positives; each fold mapped by a fit on other data
    drawn like its own (not its own frames), the pooled PR-AUC comes back up."""
    ys, raw, mapped = [], [], []
    for k, (a, b) in enumerate(((1.0, 0.0), (0.25, -1.0))):
        y_fit, p_fit = _logistic_data(a, b, seed=10 + k)
        y, p = _logistic_data(a, b, seed=20 + k)
        p = 1 / (1 + np.exp(-4 * logit(p))) if k else p  # the overconfident model's scale
        p_fit = 1 / (1 + np.exp(-4 * logit(p_fit))) if k else p_fit
        m = fit_platt(y_fit, p_fit)
        ys.append(y), raw.append(p), mapped.append(apply_platt(p[:, None], [m])[:, 0])
    y = np.concatenate(ys)
    pooled_raw, pooled_mapped = (average_precision_score(y, np.concatenate(q)) for q in (raw, mapped))
    assert pooled_mapped > pooled_raw + 0.02
