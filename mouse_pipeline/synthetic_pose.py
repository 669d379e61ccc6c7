"""The pose file of a synthetic video: DeepLabCut-like tracks of the drawn body parts.

:func:`pose_tracks` turns the body-part positions :mod:`mouse_pipeline.synthetic_draw` drew
into what a pose estimator would have written: jitter, likelihoods, ~2 % confidently wrong
points, gaps without a point and swapped forepaws (the notes of :mod:`mouse_pipeline.synthetic`).
"""

from __future__ import annotations

import math

import numpy as np

from .synthetic_draw import BODY_PARTS


def pose_tracks(first_rng: np.random.Generator, later_rng: np.random.Generator, parts: np.ndarray,
                rows: np.ndarray, states: list[str], length: float, size: int) -> dict[str, np.ndarray]:
    """``{body part: (n, 3) x, y, likelihood}`` of one video; ``parts`` is ``(n, parts, 2)`` as
    drawn, ``rows`` the planner's posture rows, ``length`` the animal's (px), ``size`` the frame's.

    The first three parts (snout, midbody, tailbase) draw from ``first_rng`` and the later
    four from ``later_rng``, so adding parts left the earlier tracks as they were.
    """
    return {**_first_parts(first_rng, parts, states, length, size),
            **_later_parts(later_rng, parts, rows, states, length, size)}


def _first_parts(rng: np.random.Generator, parts: np.ndarray, states: list[str],
                 length: float, size: int) -> dict[str, np.ndarray]:
    """DeepLabCut-like tracks: small noise, likelihood ~0.95, ~2 % wrong low-likelihood points."""
    n, L = len(parts), length
    out = {}
    for j, name in enumerate(("snout", "midbody", "tailbase")):
        xy = parts[:, j] + rng.normal(0, 0.008 * L, (n, 2))
        like = 1 - rng.beta(1.5, 30, n)
        if name == "snout":
            like[np.array(states) == "groom"] -= rng.uniform(0.05, 0.2)
        bad = rng.random(n) < 0.02
        if name == "midbody" and n >= 10 and not bad.any():
            bad[rng.integers(n)] = True
        nb = int(bad.sum())
        like[bad] = rng.uniform(0.02, 0.45, nb)
        jump = rng.uniform(1, 3, nb)[:, None] * L
        ang = rng.uniform(0, 2 * math.pi, nb)
        xy[bad] += jump * np.stack([np.cos(ang), np.sin(ang)], 1)
        xy = np.clip(xy, 0, size - 1)
        out[name] = np.column_stack([xy, np.clip(like, 0, 1)])
    return out


def _later_parts(rng: np.random.Generator, parts: np.ndarray, rows: np.ndarray,
                 states: list[str], length: float, size: int) -> dict[str, np.ndarray]:
    """Tracks of the ears and forepaws (parts 3-6 of ``parts``): jitter, likelihoods, wrong
    detections, gaps without a point and swapped forepaws (see :mod:`mouse_pipeline.synthetic`'s notes)."""
    n, L = len(parts), length
    st = np.array(states)
    # forepaws are seen when drawn: at the face while grooming with paws shown, or reared
    seen = (rows[:, 9] > 0) | (rows[:, 7] >= 0.5)
    xy = parts[:, 3:7].copy()
    like = np.empty((n, 4))
    for k in range(4):
        if k < 2:  # ears
            xy[:, k] += rng.normal(0, 0.01 * L, (n, 2))
            like[:, k] = 1 - rng.beta(1.5, 30, n)
        else:
            sd = np.where(seen, 0.015, 0.03)[:, None] * L
            xy[:, k] += rng.normal(0, 1, (n, 2)) * sd
            like[:, k] = np.where(seen, 1 - rng.beta(1.5, 20, n), rng.beta(5, 3.5, n))
    like[st == "groom", 2:] -= 0.05 * rng.random((int((st == "groom").sum()), 1))
    # forepaws swapped for a few frames, confidently (left and right look alike)
    t = 0
    while t < n:
        if rng.random() < 0.003:
            m = int(rng.integers(1, 6))
            xy[t:t + m, [2, 3]] = xy[t:t + m, [3, 2]]
            t += m
        t += 1
    for k in range(4):
        bad = rng.random(n) < 0.02
        nb = int(bad.sum())
        like[bad, k] = rng.uniform(0.02, 0.45, nb)
        ang = rng.uniform(0, 2 * math.pi, nb)
        xy[bad, k] += rng.uniform(1, 3, nb)[:, None] * L * np.stack([np.cos(ang), np.sin(ang)], 1)
        starts = np.flatnonzero(rng.random(n) < 0.004)  # lost for 1-8 frames: no point at all
        for t0, m in zip(starts, rng.integers(1, 9, len(starts)), strict=True):
            xy[t0:t0 + m, k] = np.nan
            like[t0:t0 + m, k] = np.nan
    xy = np.clip(xy, 0, size - 1)  # NaN stays NaN
    return {name: np.column_stack([xy[:, k], np.clip(like[:, k], 0, 1)])
            for k, name in enumerate(BODY_PARTS[3:])}
