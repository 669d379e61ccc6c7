"""The trials of one unit as the scheduler submits them: all at once, or proposed by TPE.

``train.search.algorithm``: ``grid`` and ``random`` fix a unit's trials before it starts
(:func:`.search.unit_trials`; every one is submitted at once). ``tpe`` proposes them one
after another with Optuna's TPE sampler (:class:`_TPEChain`): trial ``k`` of a fold is
proposed from the validation scores of that fold's trials ``< k`` alone, so a test video
never reaches the sampler, and each fold searches on its own (search is nested).
Under ``train.models: auto`` every searched kind is a chain of its own (its own sampler,
its own ``n_trials``), the chains of one unit running side by side. With
``train.search.early_stop: asha`` the fixed trials of ``grid`` and ``random`` run as such
chains too (:class:`_FixedChain`), and each trial is given the rung scores of its chain's
earlier trials (:meth:`UnitSearch.rungs`, :mod:`.asha`).

Reproducible: a sampler's seed is a function of (``train.seed``, fold, kind) alone
(:func:`sampler_seed`), and what it is told comes in the order of its own chain,
whatever the runner (inline, ``train.workers``, ``--ray``) and whichever fold finishes
first. A run killed in the middle of a unit replays the unit's logged trials when it is
resumed (:mod:`mouse_pipeline.runs.trials`): each chain is told them again in order, so
it proposes the same remaining trials.

Optuna is optional (``pip install 'mouse-pipeline[search]'``): imported only when
``tpe`` is used, and its absence is one :class:`~mouse_pipeline.errors.ConfigError` line.
Optuna's ask/tell interface is used directly rather than Ray Tune's ``OptunaSearch``
wrapper: the proposals must be the same with and without Ray, and the scheduler, not Tune's
trial loop, owns the run folder.

No TensorFlow here.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..config import Config
from ..errors import ConfigError
from .asha import Rungs
from .search import Trial, kind_space, unit_trials

INSTALL_HINT = "pip install 'mouse-pipeline[search]' (or pip install 'optuna>=4,<6')"


def require_optuna(source: str = "<config>") -> Any:
    """The ``optuna`` module (its own log quietened); one :class:`ConfigError` line without it."""
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError(f"{source}: key 'train.search': algorithm tpe and early_stop asha need Optuna, "
                          f"which is not installed ({exc}); install it with: {INSTALL_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def needs_optuna(cfg: Config) -> bool:
    """Whether the run's search uses Optuna (TPE proposals or ASHA's pruner)."""
    return is_adaptive(cfg) or cfg.train.search.early_stop == "asha"


def is_adaptive(cfg: Config) -> bool:
    """Whether trials are proposed from earlier trials' scores (``tpe`` with a search space)."""
    return cfg.train.search.algorithm == "tpe" and bool(cfg.train.search.space)


def sampler_seed(cfg: Config, fold_index: int, kind: str) -> int:
    """The TPE sampler's seed of one kind's chain in one fold (the final fold has index -1)."""
    entropy = [cfg.train.seed, fold_index + 1, zlib.crc32(kind.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31 - 1))


class _FixedChain:
    """One kind's fixed trials (grid, random) submitted one after another (under ASHA)."""

    def __init__(self, trials: list[Trial]) -> None:
        self.trials, self.offset, self.n, self.seed = trials, trials[0].index, len(trials), None
        self.asked = 0

    def ask(self) -> Trial | None:
        if self.asked >= self.n:
            return None
        self.asked += 1
        return self.trials[self.asked - 1]

    def tell(self, trial: Trial, score: float, pruned_at: int = 0) -> None:
        pass  # nothing to learn: the trials were fixed before the unit started


class _TPEChain:
    """One kind's trials in one unit, proposed one at a time by a seeded TPE sampler.

    Each search key is a categorical choice of the index of its candidate value, so any
    candidate (a number, a list, a name) is searched the same way.
    """

    def __init__(self, optuna: Any, cfg: Config, fold_index: int, kind: str, space: dict[str, Any],
                 offset: int) -> None:
        s = cfg.train.search
        self.kind, self.space, self.keys, self.offset, self.n = kind, space, sorted(space), offset, s.n_trials
        self.seed = sampler_seed(cfg, fold_index, kind)
        sampler = optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=s.startup_trials)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.asked: list[Any] = []
        self.state = optuna.trial.TrialState

    def ask(self) -> Trial | None:
        """The chain's next trial; None when its ``n_trials`` are proposed."""
        t = len(self.asked)
        if t >= self.n:
            return None
        trial = self.study.ask()
        self.asked.append(trial)
        params = {k: self.space[k][trial.suggest_categorical(k, list(range(len(self.space[k]))))]
                  for k in self.keys}
        return Trial(self.offset + t, self.kind, params, t)

    def tell(self, trial: Trial, score: float, pruned_at: int = 0) -> None:
        """A trial's validation score; one that could not be scored (NaN) tells nothing, one
        ASHA stopped at epoch ``pruned_at`` is told as pruned there with its score."""
        asked = self.asked[trial.seed_index]
        if not math.isfinite(score):
            self.study.tell(asked, state=self.state.FAIL)
        elif pruned_at:
            asked.report(score, pruned_at)
            self.study.tell(asked, state=self.state.PRUNED)
        else:
            self.study.tell(asked, score)


class UnitSearch:
    """The trials of one unit: those to submit first, then those each result lets through.

    ``n`` is the unit's number of trials (known before it starts); ``width`` the most of
    them in flight at once; ``trials`` every trial proposed so far by its number.
    """

    def __init__(self, cfg: Config, model: str, fold_index: int, kinds: Sequence[str]) -> None:
        s = cfg.train.search
        self.algorithm, self.startup_trials = s.algorithm, s.startup_trials
        self.asha = Rungs(s.asha.min_epochs, s.asha.reduction_factor) if s.early_stop == "asha" else None
        self.trials: dict[int, Trial] = {}
        self.chains: dict[str, Any] = {}  # kind -> its _TPEChain or (under ASHA) _FixedChain
        self.fixed: list[Trial] = []  # trials submitted at once
        self.reached: dict[int, dict[str, dict[int, float]]] = {}  # ASHA: each scored trial's rungs
        if is_adaptive(cfg):
            self._tpe_chains(cfg, model, fold_index, kinds)
        elif self.asha is None:
            self.fixed = unit_trials(cfg, model, kinds)
        else:  # ASHA compares a trial with the earlier ones: one after another, per kind
            trials = unit_trials(cfg, model, kinds)
            for kind in dict.fromkeys(t.kind for t in trials):
                self.chains[kind] = _FixedChain([t for t in trials if t.kind == kind])
        self.n = len(self.fixed) + sum(c.n for c in self.chains.values())
        self.width = len(self.fixed) + len(self.chains)

    def _tpe_chains(self, cfg: Config, model: str, fold_index: int, kinds: Sequence[str]) -> None:
        optuna = require_optuna(cfg.source)
        searched = [model] if model != "auto" else list(
            cfg.train.auto.models if cfg.train.auto.models is not None else kinds)
        offset = 0
        for kind in searched:
            space = cfg.train.search.space if model != "auto" else kind_space(cfg, kind, kinds)
            if space:
                self.chains[kind] = _TPEChain(optuna, cfg, fold_index, kind, space, offset)
                offset += self.chains[kind].n
            else:  # nothing of this kind to search: its one trial of defaults
                self.fixed.append(Trial(offset, kind, {}, 0))
                offset += 1

    def start(self) -> list[Trial]:
        """The trials to submit before any result is in."""
        first = [t for t in (c.ask() for c in self.chains.values()) if t is not None]
        return self._proposed(sorted(self.fixed + first, key=lambda t: t.index))

    def rungs(self, trial: Trial) -> Rungs | None:
        """What ASHA compares ``trial`` with: the rung scores of its chain's earlier trials
        (all scored: a chain runs one trial at a time); None without ASHA."""
        if self.asha is None:
            return None
        earlier: dict[str, list[dict[int, float]]] = {}
        chain = self._chain(trial)
        for j in range(chain.offset, trial.index) if chain is not None else ():
            for key, values in self.reached.get(j, {}).items():
                earlier.setdefault(key, []).append(values)
        return replace(self.asha, earlier=earlier)

    def done(self, index: int, score: float, rungs: dict[str, dict[int, float]] | None = None,
             pruned_at: int = 0) -> list[Trial]:
        """Trial ``index`` scored ``score`` on validation (``rungs``: its fits' rung scores;
        ``pruned_at``: the epoch ASHA stopped it at): the trials this lets through."""
        trial = self.trials[index]
        self.reached[index] = rungs or {}
        chain = self._chain(trial)
        if chain is None:
            return []
        chain.tell(trial, score, pruned_at)
        nxt = chain.ask()
        return self._proposed([nxt] if nxt is not None else [])

    def record(self) -> dict[str, Any]:
        """How the unit's trials were chosen (for its ``history.json``)."""
        out: dict[str, Any] = {"algorithm": self.algorithm, "n_trials": self.n}
        tpe = {kind: c.seed for kind, c in self.chains.items() if isinstance(c, _TPEChain)}
        if tpe:
            out.update(sampler="optuna TPESampler", startup_trials=self.startup_trials, seeds=tpe)
        if self.asha is not None:
            out.update(early_stop="asha", pruner="optuna SuccessiveHalvingPruner",
                       min_epochs=self.asha.min_epochs, reduction_factor=self.asha.reduction_factor)
        return out

    def _chain(self, trial: Trial) -> Any:
        chain = self.chains.get(trial.kind)
        return chain if chain is not None and chain.offset <= trial.index < chain.offset + chain.n else None

    def _proposed(self, trials: list[Trial]) -> list[Trial]:
        for t in trials:
            self.trials[t.index] = t
        return trials
