"""Platt scaling of one behaviour's probabilities: ``p' = sigmoid(a * logit(p) + b)``.

Out-of-fold PR-AUC pools every fold's test probabilities on one scale. Under
``train.models: auto`` the folds may hold different kinds (a per-frame linear model in one,
a transformer in the next), whose probabilities are not calibrated alike, so pooling ranks
one fold's frames above another's for no reason in the frames. With
``train.auto.select: inner_videos`` every trial already predicts each training video of the
fold from fits on the other training videos; :func:`fit_platt` fits ``a`` and ``b`` on those
held-out predictions and their labels (``train.auto.calibrate``), never on a test video,
and the fold's probabilities are mapped by :func:`apply_platt` before thresholds and
post-processing are chosen. The map is increasing (``0 < a <= 1``), so it changes no
ranking within a fold: each fold's own PR-AUC, thresholded bouts and chosen post-processing
are those of the raw probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Probabilities are clipped to [TINY, 1 - 2**-53] before the logit: only exact 0 and 1 move
#: (a float32 probability below 1 is at most 1 - 2**-24), so no two distinct ones become equal.
TINY = 1e-300
TOP = 1.0 - 2.0**-53
#: Largest slope: the map may soften a model's confidence, never sharpen it, so that frames
#: the model tells apart are not pushed together at 0 or 1 in floating point.
MAX_SLOPE = 1.0


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), TINY, TOP)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _loss(design: np.ndarray, t: np.ndarray, w: np.ndarray) -> float:
    z = design @ w
    return float(np.mean(np.logaddexp(0.0, z) - t * z))


def _newton(design: np.ndarray, t: np.ndarray, w: np.ndarray, free: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Minimise the mean cross-entropy to targets ``t`` over the ``free`` parameters (Newton's
    method with step halving, so each step lowers the loss)."""
    w = w.copy()
    for _ in range(iterations):
        q = _sigmoid(design @ w)
        d = design[:, free]
        grad = d.T @ (q - t) / t.size
        hess = (d * (q * (1 - q))[:, None]).T @ d / t.size + 1e-12 * np.eye(int(free.sum()))
        step = np.zeros_like(w)
        step[free] = np.linalg.solve(hess, grad)
        before, scale = _loss(design, t, w), 1.0
        while scale > 1e-8 and _loss(design, t, w - scale * step) > before:
            scale /= 2
        w -= scale * step
        if np.max(np.abs(scale * step)) < 1e-10:
            break
    return w


def fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float] | None:
    """Slope and intercept of the logistic map from ``logit(p)`` to the labels ``y`` (frames
    labelled -1 left out), as Platt (1999) fits it: targets ``(N+ + 1) / (N+ + 2)`` and
    ``1 / (N- + 2)`` instead of 1 and 0, so that predictions that separate the classes still
    give a finite map; the slope at most :data:`MAX_SLOPE` (above it, the intercept alone is
    fitted at that slope). None when the labels hold one class only or the slope is not
    positive (held-out predictions that rank the wrong way: no map)."""
    y, x = np.asarray(y).ravel(), logit(p).ravel()
    keep = y != -1
    y, x = y[keep], x[keep]
    n_pos = int((y == 1).sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    t = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
    design = np.stack([x, np.ones_like(x)], axis=1)
    w = _newton(design, t, np.array([0.0, 0.0]), np.array([True, True]))
    if w[0] > MAX_SLOPE:
        w = _newton(design, t, np.array([MAX_SLOPE, w[1]]), np.array([False, True]))
    if not np.all(np.isfinite(w)) or w[0] <= 0:
        return None
    return float(w[0]), float(w[1])


def apply_platt(p: np.ndarray, maps: Sequence[Sequence[float] | None]) -> np.ndarray:
    """``p`` (frames x behaviours) with column ``j`` mapped by ``maps[j]`` (None: unchanged),
    in float64 (float32 would merge mapped probabilities near 1 that differed before)."""
    p = np.asarray(p)
    if len(maps) != p.shape[1]:
        raise ValueError(f"{len(maps)} calibration maps for {p.shape[1]} behaviours")
    out = p.astype(np.float64)
    for j, ab in enumerate(maps):
        if ab is not None:
            a, b = ab
            out[:, j] = _sigmoid(a * logit(p[:, j]) + b)
    return out
