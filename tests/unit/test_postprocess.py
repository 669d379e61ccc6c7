"""Gap closing, short-bout removal and parameter choice on validation videos."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mouse_pipeline.postprocess import (
    PostParams,
    apply,
    choose_postprocess,
    choose_postprocess_per_behavior,
    close_gaps,
    remove_short,
)


def a(*values):
    return np.array(values, dtype=np.int8)


@pytest.mark.parametrize(
    ("b", "gap", "expected"),
    [
        (a(0, 1, 1, 0, 0, 1, 1), 2, a(0, 1, 1, 1, 1, 1, 1)),
        (a(0, 1, 1, 0, 0, 1, 1), 1, a(0, 1, 1, 0, 0, 1, 1)),
        (a(0, 0, 1, 0, 0), 5, a(0, 0, 1, 0, 0)),  # edge runs of 0 are not gaps
        (a(1, 0, 1, 0, 0, 0, 1), 1, a(1, 1, 1, 0, 0, 0, 1)),
        (a(1, 1, 1), 3, a(1, 1, 1)),
        (a(), 2, a()),
        (a(1, 0, 1), 0, a(1, 0, 1)),
    ],
)
def test_close_gaps(b, gap, expected):
    out = close_gaps(b, gap)
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("b", "min_len", "expected"),
    [
        (a(1, 0, 1, 1, 0, 1, 1, 1), 2, a(0, 0, 1, 1, 0, 1, 1, 1)),
        (a(1, 1, 0, 0, 1), 2, a(1, 1, 0, 0, 0)),  # runs at both ends
        (a(1, 1, 1), 4, a(0, 0, 0)),
        (a(1, 1, 1), 3, a(1, 1, 1)),
        (a(), 3, a()),
        (a(0, 1, 0), 1, a(0, 1, 0)),
    ],
)
def test_remove_short(b, min_len, expected):
    np.testing.assert_array_equal(remove_short(b, min_len), expected)


@given(st.lists(st.integers(0, 1), max_size=60), st.integers(0, 6))
def test_close_gaps_matches_loop(values, gap):
    b = np.array(values, dtype=np.int8)
    expected = b.copy()
    ones = np.flatnonzero(b)
    for left, right in zip(ones[:-1], ones[1:], strict=True):
        if 1 < right - left <= gap + 1:
            expected[left:right] = 1
    np.testing.assert_array_equal(close_gaps(b, gap), expected)
    assert not np.shares_memory(close_gaps(b, gap), b)


def test_apply_per_behaviour():
    probs = np.array([[0.9, 0.2], [0.1, 0.8], [0.9, 0.8], [0.1, 0.1], [0.1, 0.8]])
    out = apply(probs, thresholds=[0.5, 0.5], max_gap=[1, 0], min_len=[1, 2])
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out[:, 0], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(out[:, 1], [0, 1, 1, 0, 0])
    with pytest.raises(ValueError, match="one per behaviour"):
        apply(probs, [0.5], 0, 1)


def test_apply_to_float32_cuts_where_the_validation_threshold_cut():
    # predict hands apply float32 probabilities; the threshold lies halfway between two
    # adjacent float32 scores and must not round onto the lower one in the comparison
    hi = np.float32(0.7)
    lo = np.nextafter(hi, np.float32(0))
    y = np.array([1, 1, 0, 0, 0])
    p = np.array([0.9, hi, lo, 0.2, 0.1], dtype=np.float32)
    params = choose_postprocess([y], [p], gap_grid=(0,), min_len_grid=(1,))
    expected = (p.astype(np.float64) >= params.threshold).astype(np.int8)  # independent: float64
    np.testing.assert_array_equal(expected, [1, 1, 0, 0, 0])  # validation F1 1 at this cut
    out = apply(p[:, None], params.threshold, params.max_gap, params.min_len)[:, 0]
    np.testing.assert_array_equal(out, expected)


def test_choose_postprocess_on_validation_videos():
    # truth: long bouts; predictions flicker inside them and have isolated false frames
    truth = np.zeros(60, dtype=np.int8)
    truth[10:30] = 1
    prob = np.where(truth == 1, 0.9, 0.1)
    prob[[14, 15, 22]] = 0.1  # gaps of 2 and 1 inside the bout
    prob[[45, 52]] = 0.9  # isolated false positives
    params = choose_postprocess(
        [truth, truth], [prob, prob], gap_grid=(0, 2, 4), min_len_grid=(1, 2, 5)
    )
    # threshold halfway between 0.1 and 0.9; gap 2 and min_len 2 give F1 1 (4 and 5 tie)
    assert params == PostParams(threshold=pytest.approx(0.5), max_gap=2, min_len=2)


def test_choose_postprocess_gaps_do_not_bridge_videos():
    # concatenated, the missed frames at the end of video 1 and start of video 2 would form
    # a 4-frame gap whose filling is rewarded; per video they are edge runs, never filled
    t1 = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    p1 = np.array([0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.9, 0.9, 0.1, 0.1])
    t2, p2 = t1[::-1], p1[::-1]
    params = choose_postprocess([t1, t2], [p1, p2], gap_grid=(0, 4), min_len_grid=(1,))
    assert params.max_gap == 0
    bridged = choose_postprocess([np.r_[t1, t2]], [np.r_[p1, p2]], (0, 4), (1,))
    assert bridged.max_gap == 4  # what would happen without per-video processing


def test_choose_postprocess_no_positives_falls_back():
    params = choose_postprocess([np.zeros(10)], [np.full(10, 0.3)], (0, 3), (1, 3))
    assert params == PostParams(0.5, 0, 1)


def test_choose_per_behavior():
    y = np.stack([np.r_[np.zeros(5), np.ones(5)], np.r_[np.ones(5), np.zeros(5)]], axis=1)
    p = y * 0.8 + 0.1
    params = choose_postprocess_per_behavior(("a", "b"), [y], [p], (0,), (1,))
    assert list(params) == ["a", "b"]
    for j, b in enumerate(("a", "b")):  # each column chosen on its own, as plain numbers
        alone = choose_postprocess([y[:, j]], [p[:, j]], (0,), (1,))
        assert params[b] == {"threshold": alone.threshold, "max_gap": 0, "min_len": 1}
        assert 0.1 < params[b]["threshold"] < 0.9 and type(params[b]["max_gap"]) is int
