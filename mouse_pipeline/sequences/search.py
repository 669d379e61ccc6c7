"""Hyperparameter trials of a run and the settings each one trains with.

Search is nested: every fold runs every trial on its own training videos and keeps the
one with the best score on its own validation (see :mod:`.scheduler`). Seeds depend only
on (seed, fold, trial, head), and for the fits that only validate (inner folds, the
validation fit of ``blocks`` before its refit) also on the fit's number, so a trial gives
the same models whichever process fits it and whatever was fitted before it.

``train.models: auto`` is one unit whose trials are those of every kind it searches
(:func:`unit_trials`): a kind's trials leave out the search keys of the other kinds, and
each keeps the number (and so the seeds) it has when that kind is trained alone.

A trial's window is checked against the TCN's receptive field here (:func:`check_window`),
so the driver checks a config without building a model. No TensorFlow here.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import Config, TrainConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class Trial:
    """One trial of a unit: its number in the unit, the kind it fits, its hyperparameters,
    and the trial number its seeds are made from (the kind's own, under ``auto``)."""

    index: int
    kind: str
    params: dict[str, Any]
    seed_index: int


def search_trials(cfg: Config, space: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Hyperparameter candidates: every grid point, or ``n_trials`` random ones (seeded).

    ``space`` replaces ``train.search.space`` (``auto``'s per-kind spaces).
    """
    space = cfg.train.search.space if space is None else space
    if not space:
        return [{}]
    keys = sorted(space)
    grid = [dict(zip(keys, values, strict=False)) for values in itertools.product(*(space[k] for k in keys))]
    if cfg.train.search.algorithm == "random" and cfg.train.search.n_trials < len(grid):
        rng = np.random.default_rng(cfg.train.seed)
        picks = sorted(rng.choice(len(grid), size=cfg.train.search.n_trials, replace=False))
        grid = [grid[i] for i in picks]
    return grid


def kind_space(cfg: Config, kind: str, kinds: Sequence[str]) -> dict[str, Any]:
    """``train.search.space`` without the keys of the other kinds of ``kinds`` (``lstm.units``
    is not a TCN's hyperparameter); general keys (``window.length``) stay."""
    return {k: v for k, v in cfg.train.search.space.items()
            if k.split(".")[0] not in kinds or k.split(".")[0] == kind}


def unit_trials(cfg: Config, model: str, kinds: Sequence[str]) -> list[Trial]:
    """The trials of one unit: ``model``'s search trials, or for ``auto`` those of every kind
    of ``train.auto.models`` (all of ``kinds`` when null) one kind after another."""
    if model != "auto":
        return [Trial(t, model, p, t) for t, p in enumerate(search_trials(cfg))]
    searched = cfg.train.auto.models if cfg.train.auto.models is not None else tuple(kinds)
    out: list[Trial] = []
    for kind in searched:
        for t, p in enumerate(search_trials(cfg, kind_space(cfg, kind, kinds))):
            out.append(Trial(len(out), kind, p, t))
    return out


def trial_config(cfg: Config, params: dict[str, Any]) -> TrainConfig:
    """The train section with one trial's values applied (validated again)."""
    return cfg.replace(**{f"train.{k}": v for k, v in params.items()}).train


def heads_for(cfg: Config) -> list[list[int]]:
    """Behaviour indices of each head: one joint head, or one per behaviour."""
    k = len(cfg.data.behaviors)
    return [list(range(k))] if cfg.train.heads == "joint" else [[i] for i in range(k)]


def head_seed(cfg: Config, fold_index: int, trial: int, head: int) -> int:
    """The seed of one head of one trial of one fold (the final fold has index -1)."""
    return cfg.train.seed + 1000 * (fold_index + 1) + 100 * trial + head


def validation_seed(cfg: Config, fold_index: int, trial: int, head: int, fit: int) -> int:
    """The seed of a fit that only validates (inner fit ``fit``, or a ``blocks`` validation
    fit followed by a refit): a function of (seed, fold, trial, head, fit) alone, apart
    from :func:`head_seed`'s, which the fold's own (refitted) model keeps."""
    entropy = [cfg.train.seed, fold_index + 1, trial, head, fit + 1]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0] % (2**31 - 1))


def tcn_receptive_field(cfg: TrainConfig) -> int:
    """Frames one output of the configured TCN can see (keras-tcn's formula)."""
    t = cfg.tcn
    return 1 + 2 * (t.kernel_size - 1) * t.stacks * sum(t.dilations)


def check_window(kind: str, cfg: TrainConfig) -> None:
    """Refuse a window shorter than the TCN's receptive field, and a converged ``linear``
    head behind a trained projection (one line, what to change)."""
    if kind == "linear" and cfg.linear.solver == "lbfgs" and cfg.fusion.projection is not None:
        raise ConfigError("train.linear.solver: lbfgs fits the output layer alone, so "
                          "train.fusion.projection would stay untrained: set train.linear.solver: adam, "
                          "or train.fusion.projection: null")
    if kind == "tcn":
        rf = tcn_receptive_field(cfg)
        if cfg.window.length < rf:
            raise ConfigError(
                f"train.window.length ({cfg.window.length}) is shorter than the TCN's receptive "
                f"field ({rf} frames): set train.window.length >= {rf} or reduce "
                "train.tcn.dilations, kernel_size or stacks")
