"""The trials of one unit as the scheduler submits them: all at once, or proposed by TPE.

``train.search.algorithm``: ``grid`` and ``random`` fix a unit's trials before it starts
(:func:`.search.unit_trials`; every one is submitted at once). ``tpe`` proposes them one
after another with Optuna's TPE sampler (:class:`_TPEChain`): trial ``k`` of a fold is
proposed from the validation scores of that fold's trials ``< k`` alone, so a test video
never reaches the sampler, and each fold searches on its own (search is nested).
Under ``train.models: auto`` every searched kind is a chain of its own (its own sampler,
its own ``n_trials``), the chains of one unit running side by side.

Reproducible: a sampler's seed is a function of (``train.seed``, fold, kind) alone
(:func:`sampler_seed`), and what it is told comes in the order of its own chain,
whatever the runner (inline, ``train.workers``, ``--ray``) and whichever fold finishes
first; a trial's fit is a pure function of its inputs, so a run killed in the middle of a
unit proposes the same trials again when it is resumed (a unit's trials are recorded
with its fold folder, so a resumed unit starts again from its first trial).

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
from typing import Any

import numpy as np

from ..config import Config
from ..errors import ConfigError
from .search import Trial, kind_space, unit_trials

INSTALL_HINT = "pip install 'mouse-pipeline[search]' (or pip install 'optuna>=4,<6')"


def require_optuna(source: str = "<config>") -> Any:
    """The ``optuna`` module (its own log quietened); one :class:`ConfigError` line without it."""
    try:
        import optuna
    except ImportError as exc:
        raise ConfigError(f"{source}: key 'train.search.algorithm': tpe needs Optuna, which is not "
                          f"installed ({exc}); install it with: {INSTALL_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def is_adaptive(cfg: Config) -> bool:
    """Whether trials are proposed from earlier trials' scores (``tpe`` with a search space)."""
    return cfg.train.search.algorithm == "tpe" and bool(cfg.train.search.space)


def sampler_seed(cfg: Config, fold_index: int, kind: str) -> int:
    """The TPE sampler's seed of one kind's chain in one fold (the final fold has index -1)."""
    entropy = [cfg.train.seed, fold_index + 1, zlib.crc32(kind.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31 - 1))


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

    def tell(self, trial: Trial, score: float) -> None:
        """A trial's validation score; one that could not be scored (NaN) tells nothing."""
        asked = self.asked[trial.seed_index]
        if math.isfinite(score):
            self.study.tell(asked, score)
        else:
            self.study.tell(asked, state=self.state.FAIL)


class UnitSearch:
    """The trials of one unit: those to submit first, then those each result lets through.

    ``n`` is the unit's number of trials (known before it starts); ``width`` the most of
    them in flight at once; ``trials`` every trial proposed so far by its number.
    """

    def __init__(self, cfg: Config, model: str, fold_index: int, kinds: Sequence[str]) -> None:
        self.algorithm, self.startup_trials = cfg.train.search.algorithm, cfg.train.search.startup_trials
        self.trials: dict[int, Trial] = {}
        self.chains: dict[str, _TPEChain] = {}
        self.fixed: list[Trial] = []
        if not is_adaptive(cfg):
            self.fixed = unit_trials(cfg, model, kinds)
            self.n = self.width = len(self.fixed)
            return
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
        self.n, self.width = offset, len(self.chains) + len(self.fixed)

    def start(self) -> list[Trial]:
        """The trials to submit before any result is in."""
        first = [t for t in (c.ask() for c in self.chains.values()) if t is not None]
        return self._proposed(sorted(self.fixed + first, key=lambda t: t.index))

    def done(self, index: int, score: float) -> list[Trial]:
        """Trial ``index`` scored ``score`` on validation: the trials this lets through."""
        trial = self.trials[index]
        chain = self.chains.get(trial.kind)
        if chain is None or not chain.offset <= index < chain.offset + chain.n:
            return []
        chain.tell(trial, score)
        nxt = chain.ask()
        return self._proposed([nxt] if nxt is not None else [])

    def record(self) -> dict[str, Any]:
        """How the unit's trials were chosen (for its ``history.json``)."""
        out: dict[str, Any] = {"algorithm": self.algorithm, "n_trials": self.n}
        if self.chains:
            out["sampler"] = "optuna TPESampler"
            out["startup_trials"] = self.startup_trials
            out["seeds"] = {kind: c.seed for kind, c in self.chains.items()}
        return out

    def _proposed(self, trials: list[Trial]) -> list[Trial]:
        for t in trials:
            self.trials[t.index] = t
        return trials
