"""Pose features: per-frame numbers from body-part tracks, in the animal's own frame.

Pure NumPy on a ``(frames, parts, 2)`` array of x, y and a ``(frames, parts)`` array of
likelihoods; no file, no video, no TensorFlow. :mod:`mouse_pipeline.features.pose_stream`
reads the pose files and caches the result as the stream ``pose``.

Cleaning
--------
A point whose likelihood is below ``min_likelihood``, or that has no coordinates (or no
likelihood where the file gives likelihoods), is *interpolated*: linearly in time between
the part's valid points, the nearest valid point held before the first and after the
last. A part with no valid point cannot be filled (:func:`parts_without_points` names
them; the caller refuses the file).

The animal's frame
------------------
Per frame, the *axis* runs from a back part to a front part (default tail base -> snout),
the *centre* is a chosen part (default ``midbody``) or the axis' midpoint. Egocentric
coordinates are the points minus the centre, rotated so that the axis points along +x,
divided by the *body length*: the median over the video of the axis length (one number
per video, so that a shorter body, e.g. rearing, stays visible as a shorter axis).

Features (:func:`feature_names` gives the columns, in order)
------------------------------------------------------------
For parts ``p`` (in the order given) and every pair ``a < b``:

- ``p_x``, ``p_y``: egocentric coordinates (body lengths);
- ``dist_a_b``: distance between two parts (body lengths);
- ``body_length``: this frame's axis length over the video's body length;
- ``angle_a_b_c_sin``, ``angle_a_b_c_cos`` for each angle triple: the signed turn at
  ``b`` from the direction a -> b to the direction b -> c (0 when the three are in a
  line; e.g. the body bend for tail base, midbody, snout);
- ``turn_rate``: the axis' angular speed (rad/s, signed);
- ``centre_forward_speed``, ``centre_lateral_speed``: the centre's velocity along and
  across the axis (body lengths per second, signed), ``centre_speed`` and
  ``centre_acceleration`` (magnitudes, body lengths per second and per second squared);
- ``p_speed``, ``p_acceleration``: each point's speed and acceleration in the arena;
- ``p_ego_speed``: each point's speed in the animal's frame (limbs and head moving
  relative to the body, e.g. grooming strokes while the body is still);
- ``p_likelihood``: the tracker's likelihood (0 where missing, 1 when the file gives none);
- ``p_interpolated``: 1 where the point was interpolated, else 0.

Time derivatives are central differences (one-sided at the ends) scaled by the frame
rate; a one-frame video has zero speeds.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

VERSION = 1
"""Bumped when the features computed from the same input change (cache files go stale)."""


@dataclass(frozen=True)
class PoseGeometry:
    """Which parts define the animal's frame, as indices into the parts.

    ``back`` and ``front`` span the body axis, ``centre`` is the origin (None: the axis'
    midpoint), ``angles`` are triples ``(a, b, c)``.
    """

    back: int
    front: int
    centre: int | None = None
    angles: tuple[tuple[int, int, int], ...] = ()


def feature_names(parts: Sequence[str], angles: Sequence[tuple[str, str, str]] = ()) -> list[str]:
    """The feature columns for these parts and angle triples, in order (see the module notes)."""
    parts = list(parts)
    names = [f"{p}_{c}" for p in parts for c in ("x", "y")]
    names += [f"dist_{a}_{b}" for a, b in itertools.combinations(parts, 2)]
    names.append("body_length")
    names += [f"angle_{a}_{b}_{c}_{f}" for a, b, c in angles for f in ("sin", "cos")]
    names += ["turn_rate", "centre_forward_speed", "centre_lateral_speed", "centre_speed",
              "centre_acceleration"]
    for what in ("speed", "acceleration", "ego_speed", "likelihood", "interpolated"):
        names += [f"{p}_{what}" for p in parts]
    return names


def valid_points(xy: np.ndarray, likelihood: np.ndarray | None, min_likelihood: float) -> np.ndarray:
    """``(T, P)`` bool: points with coordinates and (when given) a likelihood of at least
    ``min_likelihood``."""
    valid = np.isfinite(xy).all(axis=-1)
    if likelihood is not None:
        with np.errstate(invalid="ignore"):
            valid &= np.asarray(likelihood) >= min_likelihood
    return valid


def parts_without_points(valid: np.ndarray) -> list[int]:
    """Indices of the parts with no valid point at all."""
    return [int(j) for j in np.flatnonzero(~np.asarray(valid).any(axis=0))]


def interpolate(xy: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``xy`` with every invalid point replaced by linear interpolation in time.

    Parameters
    ----------
    xy
        ``(T, P, 2)`` points (NaN allowed where invalid).
    valid
        ``(T, P)`` which points to keep.

    Raises
    ------
    ValueError
        A part has no valid point.
    """
    xy = np.asarray(xy, dtype=np.float64)
    empty = parts_without_points(valid)
    if empty:
        raise ValueError(f"parts {empty} have no valid point to interpolate from")
    out = xy.copy()
    t = np.arange(xy.shape[0])
    for j in range(xy.shape[1]):
        ok = valid[:, j]
        if ok.all():
            continue
        for k in range(2):
            out[:, j, k] = np.interp(t, t[ok], xy[ok, j, k])
    return out


def _derivative(values: np.ndarray, fps: float) -> np.ndarray:
    """Central differences along time (axis 0) per second; zeros for a single frame."""
    if values.shape[0] < 2:
        return np.zeros_like(values)
    return np.gradient(values, axis=0) * fps


def egocentric(xy: np.ndarray, geometry: PoseGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points in the animal's frame (not yet scaled), the centre and the axis angle.

    Returns
    -------
    tuple
        ``(T, P, 2)`` points relative to the centre, rotated so the axis points along +x;
        ``(T, 2)`` centre in the arena; ``(T,)`` axis angle (rad, in the arena's frame).
    """
    back, front = xy[:, geometry.back], xy[:, geometry.front]
    centre = xy[:, geometry.centre] if geometry.centre is not None else (back + front) / 2
    d = front - back
    angle = np.arctan2(d[:, 1], d[:, 0])
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    rel = xy - centre[:, None, :]
    ego = np.stack([c * rel[..., 0] + s * rel[..., 1], -s * rel[..., 0] + c * rel[..., 1]], axis=-1)
    return ego, centre, angle


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + math.pi) % (2 * math.pi) - math.pi


def compute(xy: np.ndarray, likelihood: np.ndarray | None, geometry: PoseGeometry, fps: float,
            min_likelihood: float) -> np.ndarray:
    """Every feature of every frame (columns as :func:`feature_names`).

    Parameters
    ----------
    xy
        ``(T, P, 2)`` x, y in pixels (NaN where the tracker gave no point).
    likelihood
        ``(T, P)`` likelihoods (NaN where missing), or None when the file gives none (every
        point with coordinates is then valid).
    geometry
        Axis, centre and angles as part indices.
    fps
        The video's frame rate (speeds are per second).
    min_likelihood
        Points below it are interpolated (and flagged).

    Returns
    -------
    np.ndarray
        ``(T, n_features)`` float32, finite.

    Raises
    ------
    ValueError
        Shapes disagree, ``fps`` is not positive, a part has no valid point, or the body
        length is zero (back and front parts always at the same place).
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2 or xy.shape[0] < 1:
        raise ValueError(f"xy must have shape (frames >= 1, parts, 2), got {xy.shape}")
    n, p = xy.shape[:2]
    if likelihood is not None and np.shape(likelihood) != (n, p):
        raise ValueError(f"likelihood must have shape {(n, p)}, got {np.shape(likelihood)}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    valid = valid_points(xy, likelihood, min_likelihood)
    filled = interpolate(xy, valid)
    ego, centre, angle = egocentric(filled, geometry)
    axis_len = np.hypot(*(filled[:, geometry.front] - filled[:, geometry.back]).T)
    scale = float(np.median(axis_len))
    if not scale > 0:
        raise ValueError("the body length (median distance between the axis parts) is zero")
    ego /= scale
    cols = [ego.reshape(n, 2 * p)]
    pairs = list(itertools.combinations(range(p), 2))
    if pairs:
        a, b = np.array(pairs).T
        cols.append(np.hypot(*(filled[:, a] - filled[:, b]).transpose(2, 0, 1)) / scale)
    cols.append((axis_len / scale)[:, None])
    for ia, ib, ic in geometry.angles:
        u, v = filled[:, ib] - filled[:, ia], filled[:, ic] - filled[:, ib]
        turn = _wrap(np.arctan2(v[:, 1], v[:, 0]) - np.arctan2(u[:, 1], u[:, 0]))
        cols.append(np.stack([np.sin(turn), np.cos(turn)], axis=1))
    turn_rate = _derivative(np.unwrap(angle), fps)
    v_centre = _derivative(centre, fps) / scale
    c, s = np.cos(angle), np.sin(angle)
    forward = c * v_centre[:, 0] + s * v_centre[:, 1]
    lateral = -s * v_centre[:, 0] + c * v_centre[:, 1]
    a_centre = _derivative(v_centre, fps)
    cols.append(np.stack([turn_rate, forward, lateral, np.hypot(*v_centre.T), np.hypot(*a_centre.T)], 1))
    v_parts = _derivative(filled, fps) / scale
    a_parts = _derivative(v_parts, fps)
    v_ego = _derivative(ego, fps)
    cols += [np.hypot(v_parts[..., 0], v_parts[..., 1]), np.hypot(a_parts[..., 0], a_parts[..., 1]),
             np.hypot(v_ego[..., 0], v_ego[..., 1])]
    like = np.ones((n, p)) if likelihood is None else np.nan_to_num(
        np.asarray(likelihood, dtype=np.float64), nan=0.0)
    cols += [like, (~valid).astype(np.float64)]
    return np.concatenate(cols, axis=1).astype(np.float32)
