"""The ensemble of a run's models: per behaviour, a weighted mean chosen on validation alone.

With few annotated videos, which head is best moves from dataset to dataset and from
behaviour to behaviour, and choosing one head on a small validation set often picks the
wrong one (docs/BENCHMARKS.md). Averaging every head instead lets the weak ones drown the
strong one. :func:`select_weights` does what lies between: greedy forward selection with
replacement (Caruana et al., "Ensemble selection from libraries of models", ICML 2004),
for each behaviour on its own:

1. start from no member;
2. add the member whose addition gives the mean probability with the best validation
   PR-AUC (a member may be added again, which gives it more weight; among equal scores the
   first member in order);
3. stop when no addition improves the score strictly, or after :data:`MAX_STEPS` additions.

A member's weight is the number of times it was added over the number of additions. Only
validation probabilities and labels are read (validation videos, inner out-of-fold
predictions or validation blocks: never a test video). A behaviour without a positive or
without a negative annotated validation frame has no PR-AUC to choose by: its weights are
equal (the plain mean) and :class:`Selection` says so.

The report (:func:`mouse_pipeline.report.add_ensemble`, per fold) and ``predict --model
ensemble`` (on the final models) both choose with this function.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import binary_metrics

#: Most additions per behaviour (the rule and this number were fixed on bench-quality seeds
#: 2026-2029 and judged on later seeds; docs/BENCHMARKS.md).
MAX_STEPS = 5


@dataclass(frozen=True)
class Selection:
    """Per behaviour, each member's weight (summing to 1) and how they were chosen."""

    weights: tuple[tuple[float, ...], ...]
    chosen: tuple[bool, ...]  # False: no positive or no negative validation frame, equal weights

    def mean(self, member_probs: Sequence[np.ndarray]) -> np.ndarray:
        """The weighted mean of each member's ``(n_frames, K)`` probabilities."""
        stacked = np.stack([np.asarray(p, np.float64) for p in member_probs])  # members x frames x K
        w = np.asarray(self.weights, np.float64).T  # members x K
        return np.einsum("mk,mfk->fk", w, stacked).astype(np.float32)


def select_weights(labels: Sequence[np.ndarray], member_probs: Sequence[Sequence[np.ndarray]],
                   max_steps: int = MAX_STEPS) -> Selection:
    """Choose each behaviour's member weights on validation (see the module docstring).

    Parameters
    ----------
    labels
        Per validation segment, its ``(n, K)`` labels (1, 0, -1 not annotated).
    member_probs
        Per member, per segment, its ``(n, K)`` validation probabilities.
    """
    n_members = len(member_probs)
    if n_members == 0 or any(len(m) != len(labels) for m in member_probs):
        raise ValueError("need each member's probabilities on every validation segment")
    y = np.concatenate([np.asarray(t).reshape(len(t), -1) for t in labels])
    probs = np.stack([np.concatenate([np.asarray(p, np.float64).reshape(len(p), -1) for p in m])
                      for m in member_probs])  # members x frames x K
    if probs.shape[1:] != y.shape:
        raise ValueError(f"validation probabilities of shape {probs.shape[1:]} for labels of shape {y.shape}")
    weights, chosen = [], []
    for j in range(y.shape[1]):
        keep = y[:, j] != -1
        yj, pj = y[keep, j], probs[:, keep, j]
        if not (yj == 1).any() or (yj == 1).all():
            weights.append((1.0 / n_members,) * n_members)
            chosen.append(False)
            continue
        counts = _greedy(yj, pj, max_steps)
        weights.append(tuple(float(c) / counts.sum() for c in counts))
        chosen.append(True)
    return Selection(tuple(weights), tuple(chosen))


def _greedy(y: np.ndarray, probs: np.ndarray, max_steps: int) -> np.ndarray:
    """How many times each member is added (``probs``: members x frames)."""
    counts = np.zeros(len(probs), np.int64)
    total = np.zeros(probs.shape[1], np.float64)
    best = -np.inf
    for step in range(max_steps):
        scores = [binary_metrics(y, (total + p) / (step + 1), 0.5)["pr_auc"] for p in probs]
        m = int(np.argmax(scores))  # the first of equal scores
        if scores[m] <= best:
            break
        counts[m] += 1
        total += probs[m]
        best = scores[m]
    return counts
