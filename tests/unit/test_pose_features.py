"""Pose features: the animal's frame, distances, angles, speeds and interpolation (pure NumPy)."""

import math

import numpy as np
import pytest

from mouse_pipeline.pose_features import PoseGeometry, compute, feature_names

PARTS = ["snout", "midbody", "tailbase", "paw"]
GEOM = PoseGeometry(back=2, front=0, centre=1, angles=((2, 1, 0),))
NAMES = feature_names(PARTS, [("tailbase", "midbody", "snout")])


def posture(n=40, seed=0):
    """A wriggling animal walking along x: (n, 4, 2) points in pixels, and likelihoods."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    centre = np.hstack([50 + 2.0 * t, 80 + 5 * np.sin(t / 7)])
    body = np.array([[20.0, 0], [0, 0], [-20, 0], [12, 6]])
    xy = centre[:, None, :] + body[None] + rng.normal(0, 1.0, (n, 4, 2))
    return xy, rng.uniform(0.7, 1.0, (n, 4))


def col(features, name):
    return features[:, NAMES.index(name)]


def transform(xy, angle, scale, shift):
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    return scale * xy @ rot.T + shift


def test_names_match_columns():
    xy, like = posture()
    f = compute(xy, like, GEOM, 10.0, 0.6)
    assert f.shape == (40, len(NAMES)) and f.dtype == np.float32 and np.isfinite(f).all()
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("angle, scale, shift", [(0.7, 1.0, (0, 0)), (-2.5, 2.5, (300, -40)),
                                                  (math.pi, 0.4, (12.5, 7))])
def test_rotated_translated_scaled_posture_gives_the_same_features(angle, scale, shift):
    xy, like = posture()
    a = compute(xy, like, GEOM, 25.0, 0.6)
    b = compute(transform(xy, angle, scale, np.array(shift)), like, GEOM, 25.0, 0.6)
    np.testing.assert_allclose(a, b, atol=2e-4)


def test_egocentric_frame_puts_the_axis_along_x_and_scales_by_body_length():
    xy = np.array([[[40.0, 10], [30, 10], [20, 10], [30, 15]]] * 3)  # facing +x, length 20
    f = compute(transform(xy, math.radians(120), 1.0, np.array([5, 5])), None, GEOM, 10.0, 0.6)
    np.testing.assert_allclose(col(f, "snout_x"), 0.5, atol=1e-6)
    np.testing.assert_allclose(col(f, "tailbase_x"), -0.5, atol=1e-6)
    np.testing.assert_allclose(col(f, "snout_y"), 0.0, atol=1e-6)
    np.testing.assert_allclose(col(f, "paw_y"), 0.25, atol=1e-6)  # 5 px off the axis / 20
    np.testing.assert_allclose(col(f, "dist_snout_paw"), math.hypot(10, 5) / 20, atol=1e-6)
    np.testing.assert_allclose(col(f, "angle_tailbase_midbody_snout_cos"), 1.0, atol=1e-6)
    np.testing.assert_allclose(col(f, "body_length"), 1.0, atol=1e-6)


def test_body_bend_angle_is_signed():
    xy = np.array([[[30.0, 20], [30, 10], [20, 10], [30, 15]]] * 2)  # head turned 90 degrees
    f = compute(xy, None, GEOM, 10.0, 0.6)
    assert abs(abs(col(f, "angle_tailbase_midbody_snout_sin")[0]) - 1) < 1e-6
    mirrored = xy * np.array([1, -1])
    g = compute(mirrored, None, GEOM, 10.0, 0.6)
    assert col(g, "angle_tailbase_midbody_snout_sin")[0] == pytest.approx(
        -col(f, "angle_tailbase_midbody_snout_sin")[0])


def test_speed_of_a_point_moving_at_known_velocity():
    n, fps, length = 30, 20.0, 20.0
    t = np.arange(n)[:, None]
    xy = np.repeat(np.array([[[40.0, 10], [30, 10], [20, 10], [30, 15]]]), n, axis=0)
    xy[:, 3] += np.hstack([3.0 * t, 4.0 * t])  # the paw: 5 px per frame = 100 px/s = 5 body lengths/s
    f = compute(xy, None, GEOM, fps, 0.6)
    np.testing.assert_allclose(col(f, "paw_speed"), 5.0, atol=1e-5)
    np.testing.assert_allclose(col(f, "paw_acceleration"), 0.0, atol=1e-4)
    np.testing.assert_allclose(col(f, "paw_ego_speed"), 5.0, atol=1e-5)  # the body is still
    np.testing.assert_allclose(col(f, "centre_speed"), 0.0, atol=1e-6)
    moving = xy + np.hstack([10.0 * t, 0 * t])[:, None, :]  # the whole animal forward: 10 px/frame
    g = compute(moving, None, GEOM, fps, 0.6)
    np.testing.assert_allclose(col(g, "centre_forward_speed"), 10 * fps / length, atol=1e-5)
    np.testing.assert_allclose(col(g, "centre_lateral_speed"), 0.0, atol=1e-5)
    np.testing.assert_allclose(col(g, "snout_ego_speed"), 0.0, atol=1e-5)
    np.testing.assert_allclose(col(g, "turn_rate"), 0.0, atol=1e-6)


def test_turn_rate_in_radians_per_second():
    n, fps, w = 50, 10.0, 0.05  # rad per frame
    a = w * np.arange(n)
    body = np.array([[20.0, 0], [0, 0], [-20, 0], [10, 5]])
    c, s = np.cos(a)[:, None, None], np.sin(a)[:, None, None]
    xy = np.concatenate([c * body[None, :, :1] - s * body[None, :, 1:],
                         s * body[None, :, :1] + c * body[None, :, 1:]], axis=2) + 100
    f = compute(xy, None, GEOM, fps, 0.6)
    np.testing.assert_allclose(col(f, "turn_rate"), w * fps, atol=1e-6)


def test_low_likelihood_and_missing_points_are_interpolated_and_flagged():
    n = 11
    t = np.arange(n, dtype=float)
    xy = np.repeat(np.array([[[40.0, 10], [30, 10], [20, 10], [30, 15]]]), n, axis=0)
    xy[:, 3, 0] = 30 + t  # the paw moves 1 px per frame along the axis
    like = np.ones((n, 4))
    true_x = xy[:, 3, 0].copy()
    xy[4, 3] = [500, 500]  # a wrong detection...
    like[4, 3] = 0.1  # ...with low likelihood
    xy[7, 3] = np.nan  # no point at all
    like[7, 3] = np.nan
    like[0, 3] = 0.2  # before the first valid point: held
    f = compute(xy, like, GEOM, 10.0, 0.6)
    np.testing.assert_allclose(col(f, "paw_x")[1:], (true_x[1:] - 30) / 20, atol=1e-6)
    assert col(f, "paw_x")[0] == pytest.approx((true_x[1] - 30) / 20)
    np.testing.assert_array_equal(col(f, "paw_interpolated"), np.isin(np.arange(n), [0, 4, 7]))
    assert col(f, "paw_likelihood")[7] == 0 and col(f, "paw_likelihood")[4] == pytest.approx(0.1)
    assert col(f, "snout_interpolated").sum() == 0


def test_part_without_any_valid_point_is_refused():
    xy, like = posture(5)
    like[:, 3] = 0.1
    with pytest.raises(ValueError, match=r"parts \[3\]"):
        compute(xy, like, GEOM, 10.0, 0.6)


def test_one_frame_has_zero_speeds_and_the_axis_midpoint_can_be_the_centre():
    xy, _ = posture(1)
    f = compute(xy, None, PoseGeometry(back=2, front=0), 10.0, 0.6)
    names = feature_names(PARTS)
    assert f.shape == (1, len(names))
    assert f[0, names.index("snout_speed")] == 0 and f[0, names.index("turn_rate")] == 0
    np.testing.assert_allclose(f[0, names.index("snout_x")], -f[0, names.index("tailbase_x")], atol=1e-6)
