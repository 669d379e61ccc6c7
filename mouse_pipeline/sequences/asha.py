"""ASHA early termination of a fold's trials on their validation scores (``train.search.early_stop``).

With ``asha`` a fit reports its validation PR-AUC after every epoch (the score early
stopping already computes: the fold's validation videos, its inner group or its blocks,
never a test video). At the *rungs*, epochs ``min_epochs * reduction_factor**r``, Optuna's
``SuccessiveHalvingPruner`` (asynchronous successive halving, ASHA) compares it with the
scores the same fit (head, inner fit) of the fold's earlier trials had at that rung: a
fit not in the best ``1 / reduction_factor`` of them (itself included; the best of them
while there are fewer than ``reduction_factor``) stops, and its trial is *pruned*: it is
recorded with the score it had, and is never the fold's model.

Deterministic and honest: the trials of one fold (of one kind, under ``auto``) run one
after another (:mod:`.tuning`), and a trial is given the rung scores of the fold's earlier
trials before it starts (:class:`Rungs`), so whether it is pruned depends on the fold's
validation scores of trials ``< k`` and its own, whatever the runner and the order in
which folds finish. The first trial of a fold is never pruned. A refit has nothing to
validate on and is never pruned.

Each fit builds its own in-memory Optuna study in the process that fits it: the earlier
trials are added with their rung scores (``completed_rung_<r>``, the pruner's own record),
then one running trial reports the fit's epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUNG_ATTR = "completed_rung_"


class Pruned(Exception):
    """A fit of a trial stopped by ASHA at ``epoch`` with validation score ``score``."""

    def __init__(self, key: str, epoch: int, score: float) -> None:
        super().__init__(f"{key} pruned at epoch {epoch}")
        self.key, self.epoch, self.score = key, epoch, score


@dataclass(frozen=True)
class Rungs:
    """What a trial's fits are compared with: per fit key, each earlier trial's rung scores
    (``{rung: score}``), and the rung schedule."""

    min_epochs: int
    reduction_factor: int
    earlier: dict[str, list[dict[int, float]]] = field(default_factory=dict)


def fit_key(head: int, fit: int | None) -> str:
    """The name of one fit of a trial: its head, and its inner (or validation) fit."""
    return f"head {head}" + ("" if fit is None else f", fit {fit}")


class FitPruner:
    """One fit's ASHA: called with ``(epoch, score)`` after each epoch, True when the fit
    must stop; :meth:`reached` its scores at the rungs it reached."""

    def __init__(self, rungs: Rungs, key: str) -> None:
        from .tuning import require_optuna

        optuna = require_optuna()
        pruner = optuna.pruners.SuccessiveHalvingPruner(
            min_resource=rungs.min_epochs, reduction_factor=rungs.reduction_factor,
            min_early_stopping_rate=0, bootstrap_count=0)
        # the sampler is never asked for a parameter; seeded anyway, so nothing is random
        self.study = optuna.create_study(direction="maximize", pruner=pruner,
                                         sampler=optuna.samplers.RandomSampler(seed=0))
        for values in rungs.earlier.get(key, []):
            if values:
                self.study.add_trial(optuna.trial.create_trial(
                    state=optuna.trial.TrialState.COMPLETE, value=float(max(values.values())),
                    system_attrs={f"{RUNG_ATTR}{r}": float(v) for r, v in values.items()}))
        self.trial: Any = self.study.ask()

    def __call__(self, epoch: int, score: float) -> bool:
        self.trial.report(float(score), epoch)
        return bool(self.trial.should_prune())

    def reached(self) -> dict[int, float]:
        attrs = self.study.trials[-1].system_attrs
        return {int(k[len(RUNG_ATTR):]): float(v) for k, v in attrs.items() if k.startswith(RUNG_ATTR)}
