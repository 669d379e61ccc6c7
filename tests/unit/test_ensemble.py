"""The ensemble's weights: greedy forward selection on validation, one behaviour at a time."""

import numpy as np
import pytest

from mouse_pipeline.ensemble import MAX_STEPS, Selection, select_weights


def _labels(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, 2)) < 0.2).astype(np.int8)


def _informative(y, rng, noise):
    return np.clip(0.3 + 0.4 * (y == 1) + rng.normal(0, noise, y.shape), 0, 1)


def test_each_behaviour_takes_the_member_that_ranks_it_and_leaves_out_the_one_that_does_not():
    rng = np.random.default_rng(1)
    y = _labels()
    good_a = np.column_stack([y[:, 0] * 0.8 + 0.1, rng.random(len(y))])  # behaviour 0 ranked perfectly, 1 noise
    good_b = np.column_stack([rng.random(len(y)), y[:, 1] * 0.8 + 0.1])  # the other way round
    pick = select_weights([y], [[good_a], [good_b]])
    assert pick.weights == ((1.0, 0.0), (0.0, 1.0)) and pick.chosen == (True, True)


def test_two_members_with_independent_errors_are_averaged_when_their_mean_ranks_better():
    rng = np.random.default_rng(2)
    y = _labels(2000)
    a, b, useless = _informative(y, rng, 0.35), _informative(y, rng, 0.35), rng.random(y.shape)
    pick = select_weights([y], [[a], [useless], [b]])
    for j in range(2):
        assert pick.weights[j][1] == 0  # never added: noise only lowers the mean's PR-AUC
        assert pick.weights[j][0] > 0 and pick.weights[j][2] > 0
        assert sum(pick.weights[j]) == pytest.approx(1)


def test_a_member_added_again_weighs_more_and_there_are_at_most_max_steps_additions():
    rng = np.random.default_rng(3)
    y = _labels(3000)
    members = [[_informative(y, rng, s)] for s in (0.25, 0.5, 0.5)]
    pick = select_weights([y], members)
    assert pick.weights[0] == pytest.approx((0.6, 0.2, 0.2))  # the first member added three times of five
    for w in pick.weights:
        assert w[0] == max(w)  # the least noisy member weighs most
        # weights are additions over additions made: multiples of 1/k for some k <= MAX_STEPS
        assert any(np.allclose(np.asarray(w) * k, np.round(np.asarray(w) * k)) for k in range(1, MAX_STEPS + 1))


def test_frames_not_annotated_are_left_out_and_segments_pool():
    rng = np.random.default_rng(4)
    y1, y2 = _labels(300, 5), _labels(300, 6)
    good = [y1 * 0.8 + 0.1, y2 * 0.8 + 0.1]
    bad = [rng.random(y1.shape), rng.random(y2.shape)]
    # the bad member is perfect only on frames nobody annotated
    y1 = y1.copy()
    y1[:100] = -1
    bad[0][:100] = 0.99
    pick = select_weights([y1, y2], [good, bad])
    assert pick.weights == ((1.0, 0.0), (1.0, 0.0))


def test_a_behaviour_without_a_positive_validation_frame_gets_equal_weights_and_says_so():
    rng = np.random.default_rng(7)
    y = _labels()
    y[:, 1] = 0
    pick = select_weights([y], [[y * 0.8 + 0.1], [rng.random(y.shape)], [rng.random(y.shape)]])
    assert pick.chosen == (True, False)
    assert pick.weights[0] == (1.0, 0.0, 0.0)
    assert pick.weights[1] == pytest.approx((1 / 3, 1 / 3, 1 / 3))


def test_the_weighted_mean_is_per_behaviour():
    a = np.array([[0.0, 1.0], [1.0, 0.0]])
    b = np.array([[1.0, 0.0], [0.0, 0.0]])
    mean = Selection(((0.25, 0.75), (1.0, 0.0)), (True, True)).mean([a, b])
    np.testing.assert_allclose(mean, [[0.75, 1.0], [0.25, 0.0]])
    assert mean.dtype == np.float32


def test_members_must_cover_every_segment():
    y = _labels()
    with pytest.raises(ValueError, match="every validation segment"):
        select_weights([y, y], [[y], [y, y]])
    with pytest.raises(ValueError, match="shape"):
        select_weights([y], [[y[:, :1]]])
