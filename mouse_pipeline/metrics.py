"""Per-frame and per-bout metrics for one behaviour, and their aggregation over folds.

Conventions
-----------
- ``y_true`` is the label column of one behaviour: ``1`` present, ``0`` absent, ``-1`` not
  annotated. Frame metrics ignore ``-1`` frames; bout metrics treat them as ``0`` (a bout
  is a run of annotated-present frames).
- A frame is predicted present when ``y_prob >= threshold``.
- Undefined values are ``nan``, never a warning: precision with no predicted positive,
  recall with no positive, F1 with neither, PR-AUC (average precision) without a positive,
  ROC-AUC without both classes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

logger = logging.getLogger(__name__)

NAN = float("nan")


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else NAN


def _labelled(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).ravel()
    y_prob = np.asarray(y_prob, dtype=np.float64).ravel()
    if y_true.shape != y_prob.shape:
        raise ValueError(f"y_true has {y_true.size} frames but y_prob has {y_prob.size}")
    keep = y_true != -1
    y_true, y_prob = y_true[keep].astype(np.int8), y_prob[keep]
    if np.isnan(y_prob).any():
        raise ValueError("y_prob contains NaN on labelled frames")
    return y_true, y_prob


def binary_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float) -> dict[str, float]:
    """Frame metrics of one behaviour.

    Parameters
    ----------
    y_true
        ``(T,)`` labels: 1, 0 or -1 (not annotated, excluded).
    y_prob
        ``(T,)`` predicted probabilities.
    threshold
        A frame is predicted present when ``y_prob >= threshold``.

    Returns
    -------
    dict
        ``accuracy, precision, recall, f1, pr_auc, roc_auc`` (``nan`` where undefined, see
        the module docstring) and ``tp, fp, tn, fn, n_frames, n_positive, prevalence``
        over labelled frames (counts 0 and everything else ``nan`` when none is labelled).
    """
    t, p = _labelled(y_true, y_prob)
    pred = p >= threshold
    pos = t == 1
    tp, fp = int(np.sum(pred & pos)), int(np.sum(pred & ~pos))
    fn, tn = int(np.sum(~pred & pos)), int(np.sum(~pred & ~pos))
    n, n_pos = t.size, tp + fn
    pr_auc = float(average_precision_score(t, p)) if n_pos else NAN
    roc_auc = float(roc_auc_score(t, p)) if 0 < n_pos < n else NAN
    return {
        "accuracy": _ratio(tp + tn, n),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, n_pos),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "pr_auc": pr_auc,
        "roc_auc": roc_auc,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "n_frames": n,
        "n_positive": n_pos,
        "prevalence": _ratio(n_pos, n),
    }


def mean_pr_auc(y_true_list: Sequence[np.ndarray], prob_list: Sequence[np.ndarray]) -> float:
    """Mean over behaviours of PR-AUC pooled over videos (e.g. to pick an epoch).

    Parameters
    ----------
    y_true_list
        Per video, ``(T_v, K)`` labels (1, 0, -1 not annotated).
    prob_list
        Per video, ``(T_v, K)`` probabilities.

    Returns
    -------
    float
        The mean of each behaviour's average precision over the labelled frames of all
        videos together, over behaviours with a positive frame; ``nan`` when none has one.
    """
    if len(y_true_list) != len(prob_list) or not y_true_list:
        raise ValueError("need the same number (at least one) of label and probability arrays")
    y = np.concatenate([np.asarray(t).reshape(len(t), -1) for t in y_true_list])
    p = np.concatenate([np.asarray(q).reshape(len(q), -1) for q in prob_list])
    scores = [binary_metrics(y[:, k], p[:, k], 0.5)["pr_auc"] for k in range(y.shape[1])]
    defined = [s for s in scores if not np.isnan(s)]
    return float(np.mean(defined)) if defined else NAN


def bouts_from_binary(b: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1 in a binary sequence as ``(start, end)`` pairs, ``end`` inclusive.

    Values other than 1 (0, -1) end a run.
    """
    on = (np.asarray(b).ravel() == 1).astype(np.int8)
    change = np.diff(np.concatenate([[0], on, [0]]))
    starts, stops = np.flatnonzero(change == 1), np.flatnonzero(change == -1)
    return [(int(s), int(e) - 1) for s, e in zip(starts, stops, strict=True)]


def _bout_array(b: np.ndarray) -> np.ndarray:
    bouts = bouts_from_binary(b)
    return np.array(bouts, dtype=np.int64).reshape(len(bouts), 2)


def bout_metrics(
    y_true_bin: np.ndarray, y_pred_bin: np.ndarray, iou: float = 0.5, fps: float | None = None
) -> dict[str, float]:
    """Bout-level agreement of one behaviour.

    A predicted bout matches a true bout when their intersection over union (in frames)
    is at least ``iou``; matching is one-to-one, greedy from the highest IoU (ties by
    earlier true bout, then earlier predicted bout). ``-1`` frames count as 0.

    Parameters
    ----------
    y_true_bin, y_pred_bin
        ``(T,)`` binary sequences.
    iou
        Minimum IoU for a match.
    fps
        Frame rate; when given ``duration_error_s`` is in seconds, else in frames.

    Returns
    -------
    dict
        ``precision`` (matched / predicted bouts), ``recall`` (matched / true bouts), ``f1``
        (``nan`` where undefined), ``n_true``, ``n_pred``, ``n_matched``, ``count_error``
        (``n_pred - n_true``) and ``duration_error_s`` (total predicted minus total true
        duration).
    """
    if np.shape(y_true_bin) != np.shape(y_pred_bin):
        raise ValueError(f"shapes differ: {np.shape(y_true_bin)} and {np.shape(y_pred_bin)}")
    true, pred = _bout_array(y_true_bin), _bout_array(y_pred_bin)
    inter = (
        np.minimum(true[:, None, 1], pred[None, :, 1])
        - np.maximum(true[:, None, 0], pred[None, :, 0])
        + 1
    ).clip(min=0)
    len_t, len_p = true[:, 1] - true[:, 0] + 1, pred[:, 1] - pred[:, 0] + 1
    union = len_t[:, None] + len_p[None, :] - inter
    overlap = np.where(inter > 0, inter / np.maximum(union, 1), 0.0)
    ti, pi = np.nonzero((overlap >= iou) & (inter > 0))
    order = np.lexsort((pi, ti, -overlap[ti, pi]))
    used_t, used_p = set(), set()
    for i, j in zip(ti[order], pi[order], strict=True):
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
    m, n_true, n_pred = len(used_t), len(true), len(pred)
    scale = fps if fps else 1.0
    return {
        "precision": _ratio(m, n_pred),
        "recall": _ratio(m, n_true),
        "f1": _ratio(2 * m, n_true + n_pred),
        "n_true": n_true,
        "n_pred": n_pred,
        "n_matched": m,
        "count_error": n_pred - n_true,
        "duration_error_s": float(len_p.sum() - len_t.sum()) / scale,
    }


def pr_curve(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall over all thresholds, on labelled frames (for plotting).

    Returns two empty arrays when there is no positive frame.
    """
    t, p = _labelled(y_true, y_prob)
    if not np.any(t == 1):
        logger.debug("No positive frame: empty precision-recall curve")
        return np.zeros(0), np.zeros(0)
    precision, recall, _ = precision_recall_curve(t, p)
    return precision, recall


def choose_threshold(y_true: np.ndarray, y_prob: np.ndarray, criterion: str = "f1") -> float:
    """Threshold maximising frame F1 on (validation) frames.

    Candidates lie halfway between consecutive distinct probabilities, so the choice does
    not sit on one validation frame's score; ties go to the higher threshold. With no
    positive frame (or none labelled) returns 0.5 and logs a warning.
    """
    if criterion != "f1":
        raise ValueError(f"criterion must be 'f1', got {criterion!r}")
    t, p = _labelled(y_true, y_prob)
    n_pos = int(np.sum(t == 1))
    if n_pos == 0:
        logger.warning("No positive validation frame: threshold falls back to 0.5")
        return 0.5
    order = np.argsort(-p, kind="stable")
    p_sorted, t_sorted = p[order], t[order] == 1
    last = np.flatnonzero(np.diff(p_sorted) != 0)  # last index of each distinct score
    last = np.append(last, p.size - 1)
    tp = np.cumsum(t_sorted)[last]
    fp = (last + 1) - tp
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    best = int(np.argmax(f1))
    score = p_sorted[last[best]]
    below = p_sorted[last[best + 1]] if best + 1 < last.size else min(score, 0.0)
    return float((score + below) / 2) if below < score else float(score)


def summarize_folds(rows: Sequence[Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each numeric metric over folds.

    Parameters
    ----------
    rows
        One mapping per fold (e.g. :func:`binary_metrics` output); non-numeric values
        (names) are skipped.

    Returns
    -------
    dict
        ``{metric: {"mean", "std", "n"}}`` ignoring ``nan`` values; ``std`` is the sample
        standard deviation (``ddof=1``), ``nan`` with fewer than two values.
    """
    keys = [
        k
        for k in dict.fromkeys(k for row in rows for k in row)
        if all(
            isinstance(row.get(k, NAN), (int, float, np.number))
            and not isinstance(row.get(k), bool)
            for row in rows
        )
    ]
    out = {}
    for key in keys:
        values = np.array([float(row.get(key, NAN)) for row in rows])
        values = values[~np.isnan(values)]
        out[key] = {
            "mean": float(values.mean()) if values.size else NAN,
            "std": float(values.std(ddof=1)) if values.size > 1 else NAN,
            "n": int(values.size),
        }
    return out
