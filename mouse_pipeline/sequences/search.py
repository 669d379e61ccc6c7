"""Hyperparameter trials of a run and the settings each one trains with.

Search is nested: every fold runs every trial on its own training videos and keeps the
one with the best score on its own validation videos (see :mod:`.scheduler`). Seeds
depend only on (seed, fold, trial, head), so a trial gives the same models whichever
process fits it and whatever was fitted before it.

No TensorFlow here.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..config import Config, TrainConfig


def search_trials(cfg: Config) -> list[dict[str, Any]]:
    """Hyperparameter candidates: every grid point, or ``n_trials`` random ones (seeded)."""
    space = cfg.train.search.space
    if not space:
        return [{}]
    keys = sorted(space)
    grid = [dict(zip(keys, values, strict=False)) for values in itertools.product(*(space[k] for k in keys))]
    if cfg.train.search.method == "random" and cfg.train.search.n_trials < len(grid):
        rng = np.random.default_rng(cfg.train.seed)
        picks = sorted(rng.choice(len(grid), size=cfg.train.search.n_trials, replace=False))
        grid = [grid[i] for i in picks]
    return grid


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
