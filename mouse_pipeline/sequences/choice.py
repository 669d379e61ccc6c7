"""``train.auto.select: inner_videos``: ``auto``'s kind chosen on videos its fits never saw.

With few videos, ``blocks`` validation scores every head on frames of the very videos it
trained on, so with random features every head reaches a PR-AUC near 1 there and the
choice among them says little about new videos (docs/BENCHMARKS.md). With
``inner_videos`` each trial of ``auto`` is, after its ``train.validation`` fits, also fitted
once per training video of the fold on the other training videos, for the epochs its
validation chose (:func:`inner_video_choice`), and predicts the video held out. The trial
with the best PR-AUC on those held-out videos (pooled, mean over behaviours) is the
fold's; its epochs, thresholds and post-processing still come from ``train.validation``,
and its model is the same one the kind trains alone (the held-out fits have their own
seeds, :func:`.search.validation_seed`, and are thrown away). Only the fold's training
videos are used: never a test video, nor a ``videos``-mode validation video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ..config import Config
from ..dataset import VideoData
from ..errors import ConfigError
from ..folds import Fold
from ..metrics import mean_pr_auc
from .results import TrialResult
from .search import Trial

#: Added to a held-out fit's number in its seed (:func:`.search.validation_seed`), apart
#: from the inner folds' and the blocks' fit numbers.
CHOICE_FIT = 1000


def check_choice(cfg: Config, folds: Sequence[Fold]) -> None:
    """Refuse ``inner_videos`` when a fold has fewer than 2 training videos (one line)."""
    if "auto" not in cfg.train.models or cfg.train.auto.select != "inner_videos":
        return
    for fold in folds:
        if len(fold.train) < 2:
            which = "the final fold" if fold.index < 0 else f"fold {fold.index}"
            raise ConfigError(f"{cfg.source}: train.auto.select: inner_videos holds out one training "
                              f"video at a time, but {which} has {len(fold.train)} training video(s); "
                              "use train.auto.select: validation (or train.validation: blocks)")


def inner_video_choice(cfg: Config, trial: Trial, n_trials: int, by_id: dict[str, VideoData], fold: Fold,
                       result: TrialResult, label: str, progress: bool) -> TrialResult:
    """``result`` with ``choice_score``: the trial's pooled PR-AUC over the fold's training
    videos, each predicted by fits on the other training videos for the trial's chosen epochs."""
    # TensorFlow: only where it fits
    from .fit import _kept_epoch, _TrialFits, fit_parts, video_part

    fits = _TrialFits(cfg, trial, n_trials, by_id, fold, label, progress)
    epochs = list(result.refit_epochs) if result.refit_epochs is not None else \
        [_kept_epoch(h) for h in result.heads]
    train, probs, seconds = list(fold.train), {}, 0.0
    for i, held in enumerate(train):
        parts = [video_part(by_id[v]) for v in train if v != held]
        models = [fit_parts(trial.kind, fits.tcfg, parts, [], o, fits.seed(h, CHOICE_FIT + i),
                            fits.head_tag(o, f" held-out video {i + 1}/{len(train)}"), progress,
                            epochs=epochs[h], stream_dims=fits.stream_dims)
                  for h, o in enumerate(fits.heads)]
        probs[held] = fits.predict(models, by_id[held].features)
        seconds += sum(f.fit_seconds for f in models)
    labels = [by_id[v].labels.matrix for v in train]
    per_behavior = [float(mean_pr_auc([y[:, [j]] for y in labels], [probs[v][:, [j]] for v in train]))
                    for j in range(len(cfg.data.behaviors))]
    scores = fits.scores([(v, 0, None) for v in train], probs)
    score = float(np.mean(scores))
    record = {"select": "inner_videos", "held_out": train, "epochs": epochs, "pr_auc": score,
              "per_behavior": per_behavior}
    return replace(result, choice_score=score if np.isfinite(score) else -np.inf, choice_record=record,
                   validation_seconds=result.validation_seconds + seconds)
