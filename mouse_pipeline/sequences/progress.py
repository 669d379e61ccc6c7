"""What the scheduler keeps of each unit (one backbone x model x fold) while its trials come in:
their scores and records, and the trial to keep (:class:`UnitProgress`); the trials as the
fold's ``history.json`` lists them (:func:`trial_records`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .choice import one_standard_error
from .results import TrialResult

if TYPE_CHECKING:
    from .scheduler import Unit
    from .tuning import UnitSearch


@dataclass
class UnitProgress:
    """Each unit's trial scores and best trial so far (a trial ASHA pruned is never the best;
    kept by the choice score where a trial has one: ``train.auto.select: inner_videos``)."""

    scores: dict[int, float] = field(default_factory=dict)
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    choices: dict[int, dict[str, Any]] = field(default_factory=dict)
    best: tuple[float, int, TrialResult] | None = None
    prefer: str = "best"  # train.auto.prefer for auto's units, "best" for the others
    candidates: dict[int, TrialResult] = field(default_factory=dict)  # with prefer: simplest only
    rule: dict[str, Any] = field(default_factory=dict)  # what prefer: simplest saw

    def add(self, t: int, result: TrialResult) -> None:
        score = result.score if result.choice_score is None else result.choice_score
        self.scores[t], self.records[t] = result.score, result.record
        if result.choice_record:
            self.choices[t] = result.choice_record
        if result.pruned:
            return
        if result.choice_record and self.prefer == "simplest":
            self.candidates[t] = result
        if self.best is None or score > self.best[0] or (score == self.best[0] and t < self.best[1]):
            self.best = (score, t, result)

    def take(self) -> tuple[int, TrialResult]:
        """The kept trial once every trial is in: the best, or with ``prefer: simplest`` the
        simplest within one standard error of it (:func:`.choice.one_standard_error`)."""
        assert self.best is not None
        (_, t, result), self.best = self.best, None
        if self.candidates:
            t, self.rule = one_standard_error([(k, r.choice_record) for k, r in sorted(self.candidates.items())])
            result = self.candidates[t]
        self.candidates = {}
        return t, result


def trial_records(unit: Unit, search: UnitSearch, state: UnitProgress) -> list[dict[str, Any]]:
    """Every trial of a unit: its kind (under ``auto``), settings, validation score and record."""
    return [{"trial": k, **({"kind": search.trials[k].kind} if unit.kind == "auto" else {}),
             "params": search.trials[k].params, "val_pr_auc": state.scores[k],
             **({"validation": state.records[k]} if state.records[k] else {}),
             **({"inner_videos": state.choices[k]} if k in state.choices else {})}
            for k in range(search.n)]
