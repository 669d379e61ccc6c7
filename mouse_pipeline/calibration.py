"""Platt scaling of one behaviour's probabilities: ``p' = sigmoid(a * logit(p) + b)``.

Out-of-fold PR-AUC pools every fold's test probabilities on one scale. Under
``train.models: auto`` the folds may hold different kinds (a per-frame linear model in one,
a transformer in the next), whose probabilities are not calibrated alike, so pooling ranks
one fold's frames above another's for no reason in the frames. With
``train.auto.select: inner_videos`` every trial already predicts each training video of the
fold from fits on the other training videos; :func:`fit_platt` fits ``a`` and ``b`` on those
held-out predictions and their labels (``train.auto.calibrate``), never on a test video,
and the fold's probabilities are mapped by :func:`apply_platt` before thresholds and
post-processing are chosen. The map is increasing (``a > 0``), so it changes no ranking
within a fold: each fold's own PR-AUC, thresholded bouts and chosen post-processing are
those of the raw probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Probabilities are clipped to [EPS, 1 - EPS] before the logit.
EPS = 1e-7
#: L2 penalty on the slope and intercept, so that held-out predictions that separate the
#: classes perfectly still give a finite map.
RIDGE = 1e-3


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_platt(y: np.ndarray, p: np.ndarray, iterations: int = 100) -> tuple[float, float] | None:
    """Slope and intercept of the logistic map from ``logit(p)`` to the labels ``y`` (frames
    labelled -1 left out), by Newton's method; None when the labels hold one class only or
    the slope is not positive (held-out predictions that rank the wrong way: no map)."""
    y, x = np.asarray(y).ravel(), logit(p).ravel()
    keep = y != -1
    y, x = y[keep].astype(np.float64), x[keep]
    if y.size == 0 or y.min() == y.max():
        return None
    design = np.stack([x, np.ones_like(x)], axis=1)
    w = np.array([1.0, 0.0])
    for _ in range(iterations):
        q = 1.0 / (1.0 + np.exp(-(design @ w)))
        grad = design.T @ (q - y) / y.size + RIDGE * w
        hess = (design * (q * (1 - q))[:, None]).T @ design / y.size + RIDGE * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    if not np.all(np.isfinite(w)) or w[0] <= 0:
        return None
    return float(w[0]), float(w[1])


def apply_platt(p: np.ndarray, maps: Sequence[Sequence[float] | None]) -> np.ndarray:
    """``p`` (frames x behaviours) with column ``j`` mapped by ``maps[j]`` (None: unchanged),
    in ``p``'s dtype."""
    p = np.asarray(p)
    if len(maps) != p.shape[1]:
        raise ValueError(f"{len(maps)} calibration maps for {p.shape[1]} behaviours")
    out = p.copy()
    for j, ab in enumerate(maps):
        if ab is not None:
            a, b = ab
            out[:, j] = 1.0 / (1.0 + np.exp(-(a * logit(p[:, j]) + b)))
    return out
