"""The acceptance of ``bench-quality`` (issue 13): a model chosen on validation alone scores,
for every behaviour, at least the per-frame logistic regression's PR-AUC and within
:data:`MARGIN` of the best head. Pure figures in, verdicts out (no TensorFlow)."""

from __future__ import annotations

from typing import Any

MARGIN = 0.03  # the acceptance's distance to the best head: auto "within 0.03 of the best head"
#: The models chosen on validation alone that the acceptance judges: ``auto`` (one head per
#: fold) and the report's ``ensemble`` (per fold and behaviour, heads weighted on validation:
#: :mod:`.ensemble`). Neither counts as a head.
CHOSEN = ("auto", "ensemble")


def check(scores: dict[str, list[float]], lr_scores: list[float],
          chosen: str) -> tuple[list[float], list[float], list[str]]:
    """One model chosen on validation alone against the acceptance, per behaviour: its
    difference to the logistic regression and to the best head (:data:`HEADS`, the chosen
    models left out), and the verdict lines (>= logistic, within :data:`MARGIN` of the best)."""
    heads = {m: s for m, s in scores.items() if m not in CHOSEN}
    to_lr, to_best, lines = [], [], []
    for j, lr in enumerate(lr_scores):
        best = max(heads, key=lambda m: heads[m][j])
        value = scores[chosen][j]
        to_lr.append(value - lr)
        to_best.append(value - heads[best][j])
        lines.append(f"{chosen} {value:.3f} {'>=' if value >= lr else '<'} logistic {lr:.3f}; best head "
                     f"{best} {heads[best][j]:.3f} ({'within' if to_best[-1] >= -MARGIN else 'NOT within'} {MARGIN})")
    return to_lr, to_best, lines


def passes(to_lr: list[float], to_best: list[float]) -> bool:
    """Every behaviour at least the logistic regression and within :data:`MARGIN` of the best head."""
    return all(a >= 0 and b >= -MARGIN for a, b in zip(to_lr, to_best, strict=True))


def checks(res: dict[str, Any], mode: str, means: bool = False) -> list[str]:
    """The acceptance of one regime's run for each model chosen on validation alone
    (:data:`CHOSEN`): at least the logistic regression, within 0.03 of the best head (on
    the pooled scores, or with ``means`` on the means over folds)."""
    run = res["runs"][mode]["fold_means" if means else "scores"]
    lr_scores = res["logistic_fold_means" if means else "logistic"]
    lines = []
    for chosen in (c for c in CHOSEN if c in run):
        lines += [f"{b}: {line}" for b, line in zip(res["behaviors"], check(run, lr_scores, chosen)[2], strict=True)]
    return lines or ["no model chosen on validation alone (auto, ensemble) in this run"]
