"""Stage 2: train sequence models on cached embeddings with honest per-video folds.

One run trains every combination of input sets (``train.inputs``, by default each of
``extract.backbones`` alone: :mod:`mouse_pipeline.streams`) x ``train.models``. For each
combination and fold:

1. the fold's training videos give the standardisation statistics and positive weights;
2. every hyperparameter trial (``train.search``) is fitted on the training side and
   validated as ``train.validation`` says (mean PR-AUC over behaviours): on validation
   videos (``videos``), on inner out-of-fold predictions of the training videos followed
   by a refit on all of them (``inner_folds``), or on contiguous blocks of the training
   videos (``blocks``); see :mod:`.fit`;
3. the trial with the best validation PR-AUC is kept (under ``train.models: auto``, over
   the trials of every kind searched; with ``train.auto.select: inner_videos`` by PR-AUC
   on the fold's training videos held out in turn, :mod:`.choice`); thresholds and
   post-processing are chosen on the validation probabilities;
4. only then are the fold's test videos predicted, once, and their probabilities saved.

A test video never influences training, early stopping, thresholds or hyperparameters.
The run folder's layout is :mod:`mouse_pipeline.runs`'s; the work is scheduled by
:mod:`.scheduler` (inline, or in ``train.workers`` processes).

Modules of stage 2: :mod:`.windows` (windowing, stitching), :mod:`.loader` (batches,
statistics), :mod:`.models` (the heads), :mod:`.fit` (one fit), :mod:`.search` (trials),
:mod:`.inference` (whole-video probabilities), :mod:`.scheduler` (what runs where),
:mod:`.converged` (the linear head fitted to convergence), :mod:`.choice` (``auto``'s
choice on held-out training videos).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import MODEL_KINDS, Config
from ..dataset import load_dataset
from ..errors import ConfigError, RunError
from ..folds import Fold, check_no_leakage, check_positives, make_folds, plan_validation
from ..runs import RunFolder, check_behavior_names
from ..runs.trials import comparable_config
from ..streams import input_sets
from .choice import check_choice
from .scheduler import schedule
from .search import check_window, trial_config, unit_trials
from .tuning import needs_optuna, require_optuna

log = logging.getLogger(__name__)


def _prepare_run(cfg: Config, run: RunFolder, overwrite: bool) -> None:
    if run.config_file.exists() and not overwrite:
        mine, theirs = cfg.to_dict(), run.read_config().to_dict()
        mine["train"]["run"] = theirs["train"]["run"]
        if comparable_config(mine) != comparable_config(theirs):
            raise RunError(f"{run.path}: run folder was made with a different config; use another "
                           "--run folder, or --overwrite to start it again")
        log.info("resuming run %s: finished folds are kept", run.path)
    elif overwrite:
        run.clear()
    run.write_config(cfg)


def _final_fold(ids: list[str], cfg: Config, n_frames: dict[str, int]) -> Fold:
    """All labelled videos: with ``videos`` validation the last n_val (in seeded order)
    validate and the rest train; otherwise all train, validated by inner folds or blocks."""
    rng = np.random.default_rng(cfg.train.seed)
    order = list(rng.permutation(ids))
    n_val = min(cfg.train.folds.n_val, len(ids) - 1) if cfg.train.validation == "videos" else 0
    val = tuple(sorted(order[:n_val]))
    train = tuple(sorted(v for v in ids if v not in val))
    return _validated([Fold(index=-1, train=train, val=val, test=())], cfg, n_frames)[0]


def _validated(folds: list[Fold], cfg: Config, n_frames: dict[str, int]) -> list[Fold]:
    t = cfg.train
    return plan_validation(folds, t.validation, n_frames, inner_k=t.inner_folds.k, blocks_k=t.blocks.k,
                           seed=t.seed)


def _make_folds(cfg: Config, run: RunFolder) -> tuple[list[str], list[Fold], dict[str, int]]:
    """The labelled videos (the same for every input set, recorded in the run) and the folds."""
    sets = input_sets(cfg)
    datasets = {b: load_dataset(cfg, b) for b in sets}
    ids = [v.video_id for v in next(iter(datasets.values()))]
    for b, vids in datasets.items():
        if [v.video_id for v in vids] != ids:
            raise RunError(f"{cfg.extract.cache}/{b}: cached videos differ from those of "
                           f"{sets[0]}; extract every backbone for every video")
    f = cfg.train.folds
    first = next(iter(datasets.values()))
    n_frames = {v.video_id: v.n_frames for v in first}
    n_val = f.n_val if cfg.train.validation == "videos" else 0  # the other modes validate on training videos
    folds = _validated(make_folds(ids, f.scheme, k=f.k, n_val=n_val, fixed_train=f.train,
                                  fixed_test=f.test, seed=cfg.train.seed), cfg, n_frames)
    check_no_leakage(folds)
    _check_window_fits(cfg, max(v.n_frames for v in first))
    check_positives(folds, {v.video_id: v.labels for v in first})
    run.record_videos({v.video_id: {"video": str(Path(v.video_file).resolve()),
                                    "labels": str(Path(v.label_file).resolve()), "fps": v.fps,
                                    "n_frames": v.n_frames}
                       for v in first})
    for vids in datasets.values():
        for v in vids:
            v.features.close()
    return ids, folds, n_frames


def _check_window_fits(cfg: Config, longest: int) -> None:
    """Refuse a window longer than every labelled video: its windows would be mostly padding
    (one such run took 15 times as long as it needed to, without a word)."""
    lengths = {trial_config(cfg, t.params).window.length for m in cfg.train.models
               for t in unit_trials(cfg, m, MODEL_KINDS)}
    if max(lengths) > longest:
        key = "train.window.length" + (" (or a search candidate)" if len(lengths) > 1 else "")
        raise ConfigError(f"{cfg.source}: {key} is {max(lengths)} frames, longer than every labelled "
                          f"video (the longest has {longest}); set it to at most {longest}")


def _start_engine(cfg: Config) -> None:
    """TensorFlow's op determinism in this process, which fits the trials; under ``--ray``
    the workers fit and predict (each sets it), and this driver imports no TensorFlow."""
    if cfg.cluster.ray.enabled:
        log.info("stage 2 runs on Ray (%s): trials, refits and fold predictions in its workers",
                 cfg.cluster.ray.address)
        return
    import tensorflow as tf

    from .. import devices

    tf.config.experimental.enable_op_determinism()
    log.info("stage 2 runs %s", devices.describe())


def train(cfg: Config, run_dir: str | Path | None = None, final: bool = False,
          progress: bool = True, overwrite: bool = False) -> Path:
    """Train every input set x model over every fold (and ``final`` models); return the run folder."""
    run = RunFolder(run_dir if run_dir is not None else cfg.train.run)
    if run_dir is not None:
        cfg = cfg.replace(**{"train.run": str(run.path)})
    check_behavior_names(cfg.data.behaviors, cfg.source)
    if needs_optuna(cfg):
        require_optuna(cfg.source)  # before the run folder is touched
    for model in cfg.train.models:
        for t in unit_trials(cfg, model, MODEL_KINDS):
            check_window(t.kind, trial_config(cfg, t.params))
    _start_engine(cfg)
    with run.lock():
        try:
            _prepare_run(cfg, run, overwrite)
            ids, folds, n_frames = _make_folds(cfg, run)
            check_choice(cfg, folds)
            run.write_folds(folds)
            sets = input_sets(cfg)
            jobs = [(b, m, fold) for b in sets for m in cfg.train.models for fold in folds]
            if final:
                final_fold = _final_fold(ids, cfg, n_frames)
                check_choice(cfg, [final_fold])
                jobs += [(b, m, final_fold) for b in sets for m in cfg.train.models]
            schedule(cfg, run, jobs, len(folds), progress)
        except BaseException:
            run.discard_untrained()  # a run that trained nothing must not block its corrected rerun
            raise
    return run.path
