"""From probabilities to bouts: threshold, close short gaps, drop short bouts.

For each behaviour, :func:`apply` does, in this order:

1. ``present = prob >= threshold``;
2. :func:`close_gaps`: runs of absent frames of at most ``max_gap`` frames *between* two
   present runs become present (runs touching the start or end of the video stay);
3. :func:`remove_short`: present runs shorter than ``min_len`` frames become absent.

``max_gap=0`` and ``min_len<=1`` leave the sequence unchanged. The parameters are chosen
per behaviour on validation videos only (:func:`choose_postprocess`), one video at a time
so that a gap never bridges two videos.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mouse_pipeline.metrics import choose_threshold

logger = logging.getLogger(__name__)

DEFAULT_GAP_GRID = (0, 1, 2, 3, 5, 8)
DEFAULT_MIN_LEN_GRID = (1, 2, 3, 5, 8)


@dataclass(frozen=True)
class PostParams:
    """Post-processing parameters of one behaviour (frames, not seconds)."""

    threshold: float
    max_gap: int
    min_len: int


def _runs(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and (exclusive) ends of the runs of 1."""
    change = np.diff(np.concatenate([[0], b, [0]]))
    return np.flatnonzero(change == 1), np.flatnonzero(change == -1)


def _fill(n: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Mask of ``n`` frames, True inside the half-open intervals ``[starts, ends)``."""
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, ends, -1)
    return np.cumsum(delta[:n]) > 0


def _binary(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b)
    if b.ndim != 1:
        raise ValueError(f"Expected a 1-d binary sequence, but got shape {b.shape}")
    return (b == 1).astype(np.int8)


def close_gaps(b: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill runs of 0 of length ``<= max_gap`` that lie between two runs of 1.

    Returns a new ``int8`` array; ``0 1 1 0 0 1 1`` with ``max_gap=2`` gives
    ``0 1 1 1 1 1 1``.
    """
    b = _binary(b)
    if max_gap <= 0:
        return b
    starts, ends = _runs(b)
    gap_start, gap_end = ends[:-1], starts[1:]
    short = gap_end - gap_start <= max_gap
    b[_fill(b.size, gap_start[short], gap_end[short])] = 1
    return b


def remove_short(b: np.ndarray, min_len: int) -> np.ndarray:
    """Set runs of 1 shorter than ``min_len`` frames to 0 (returns a new ``int8`` array)."""
    b = _binary(b)
    if min_len <= 1:
        return b
    starts, ends = _runs(b)
    short = ends - starts < min_len
    b[_fill(b.size, starts[short], ends[short])] = 0
    return b


def _per_behavior(value: float | Sequence[float], k: int, name: str) -> list:
    values = list(value) if isinstance(value, (Sequence, np.ndarray)) else [value] * k
    if len(values) != k:
        raise ValueError(f"{name}: expected {k} values (one per behaviour), got {len(values)}")
    return values


def apply(
    probs: np.ndarray,
    thresholds: float | Sequence[float],
    max_gap: int | Sequence[int],
    min_len: int | Sequence[int],
) -> np.ndarray:
    """Binarise ``(T, K)`` probabilities and clean the bouts of each behaviour.

    Parameters
    ----------
    probs
        ``(T, K)`` probabilities (one video).
    thresholds, max_gap, min_len
        One value for all behaviours or a sequence of ``K`` values.

    Returns
    -------
    numpy.ndarray
        ``(T, K)`` ``int8`` of 0/1.

    Notes
    -----
    Probabilities are compared in float64, as the thresholds were chosen
    (:func:`~mouse_pipeline.metrics.choose_threshold`): compared in float32, a threshold
    halfway between two adjacent float32 scores would round onto the lower one and mark
    its frames present.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"Expected probabilities of shape (T, K), but got {probs.shape}")
    k = probs.shape[1]
    out = np.empty(probs.shape, dtype=np.int8)
    columns = zip(
        _per_behavior(thresholds, k, "thresholds"),
        _per_behavior(max_gap, k, "max_gap"),
        _per_behavior(min_len, k, "min_len"),
        strict=True,
    )
    for j, (threshold, gap, length) in enumerate(columns):
        b = (probs[:, j] >= threshold).astype(np.int8)
        out[:, j] = remove_short(close_gaps(b, gap), length)
    return out


def _f1(y_true: Sequence[np.ndarray], y_pred: Sequence[np.ndarray]) -> float:
    tp = fp = fn = 0
    for t, p in zip(y_true, y_pred, strict=True):
        keep = t != -1
        t, p = t[keep] == 1, p[keep] == 1
        tp += int(np.sum(t & p))
        fp += int(np.sum(~t & p))
        fn += int(np.sum(t & ~p))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def choose_postprocess(
    y_true_list: Sequence[np.ndarray],
    prob_list: Sequence[np.ndarray],
    gap_grid: Sequence[int] = DEFAULT_GAP_GRID,
    min_len_grid: Sequence[int] = DEFAULT_MIN_LEN_GRID,
) -> PostParams:
    """Choose threshold, ``max_gap`` and ``min_len`` of one behaviour on validation videos.

    The threshold maximises frame F1 over all validation frames
    (:func:`~mouse_pipeline.metrics.choose_threshold`); then every ``(max_gap, min_len)``
    of the grids, to which 0 and 1 (no post-processing) are always added, is applied to
    each video separately and scored by frame F1 over their labelled frames. Ties go to
    the smaller ``max_gap``, then the smaller ``min_len``.

    Parameters
    ----------
    y_true_list
        Per validation video, ``(T_v,)`` labels (1, 0, -1 not annotated).
    prob_list
        Per validation video, ``(T_v,)`` probabilities.
    gap_grid, min_len_grid
        Candidate values in frames.

    Returns
    -------
    PostParams
    """
    if len(y_true_list) != len(prob_list) or not y_true_list:
        raise ValueError("need the same number (at least one) of label and probability arrays")
    y_true = [np.asarray(t).ravel() for t in y_true_list]
    probs = [np.asarray(p, dtype=np.float64).ravel() for p in prob_list]
    threshold = choose_threshold(np.concatenate(y_true), np.concatenate(probs))
    binary = [(p >= threshold).astype(np.int8) for p in probs]
    best, best_f1 = PostParams(threshold, 0, 1), -1.0
    for gap in sorted(set(gap_grid) | {0}):
        closed = [close_gaps(b, gap) for b in binary]
        for length in sorted(set(min_len_grid) | {1}):
            f1 = _f1(y_true, [remove_short(b, length) for b in closed])
            if f1 > best_f1:  # nan never wins: (0, 1) stays when nothing is defined
                best, best_f1 = PostParams(threshold, int(gap), int(length)), f1
    logger.debug("Chose %s (validation frame F1 %.3f)", best, best_f1)
    return best


def choose_postprocess_per_behavior(
    behaviors: Sequence[str],
    y_true_list: Sequence[np.ndarray],
    prob_list: Sequence[np.ndarray],
    gap_grid: Sequence[int] = DEFAULT_GAP_GRID,
    min_len_grid: Sequence[int] = DEFAULT_MIN_LEN_GRID,
) -> dict[str, dict[str, float | int]]:
    """:func:`choose_postprocess` for each column of per-video ``(T_v, K)`` arrays.

    Returns
    -------
    dict
        ``behaviour -> {"threshold", "max_gap", "min_len"}`` as plain numbers, the form
        a run folder records.
    """
    out = {}
    for j, b in enumerate(behaviors):
        p = choose_postprocess([np.asarray(t)[:, j] for t in y_true_list],
                               [np.asarray(q)[:, j] for q in prob_list], gap_grid, min_len_grid)
        out[b] = {"threshold": float(p.threshold), "max_gap": int(p.max_gap), "min_len": int(p.min_len)}
    return out
