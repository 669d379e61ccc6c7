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

With ``train.auto.prefer: simplest`` the fold keeps instead the trial with the fewest
trainable parameters among those whose held-out PR-AUC is within one standard error (over
the held-out videos) of the best's (:func:`one_standard_error`, the one-standard-error rule
of Breiman et al., *Classification and Regression Trees*, 1984).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

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
    """Refuse ``inner_videos`` when a fold has fewer than 2 training videos, and ``prefer:
    simplest`` without ``inner_videos`` (one line each)."""
    if "auto" not in cfg.train.models:
        return
    if cfg.train.auto.select != "inner_videos":
        if cfg.train.auto.prefer == "simplest":
            raise ConfigError(f"{cfg.source}: train.auto.prefer: simplest weighs the held-out training "
                              "videos' standard error, which only train.auto.select: inner_videos measures; "
                              "set select: inner_videos, or prefer: best")
        return
    for fold in folds:
        if len(fold.train) < 2:
            which = "the final fold" if fold.index < 0 else f"fold {fold.index}"
            raise ConfigError(f"{cfg.source}: train.auto.select: inner_videos holds out one training "
                              f"video at a time, but {which} has {len(fold.train)} training video(s); "
                              "use train.auto.select: validation (or train.validation: blocks)")


def trainable_parameters(model) -> int:
    """The number of weights training changes (not the standardisation's statistics)."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def standard_error(values: Sequence[float]) -> float:
    """The standard error of the mean of ``values`` (NaN ones left out); 0 for fewer than 2."""
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) >= 2 else 0.0


def one_standard_error(candidates: Sequence[tuple[int, dict]]) -> tuple[int, dict[str, Any]]:
    """``train.auto.prefer: simplest``: of ``(trial, choice record)`` pairs, the trial with the
    fewest trainable parameters whose held-out PR-AUC is at least the best's minus the best's
    standard error over the held-out videos (the one-standard-error rule); ties go to the
    higher score, then the earlier trial. Also what the rule saw, for the fold's history."""
    best_t, best = max(candidates, key=lambda c: (c[1]["pr_auc"], -c[0]))
    floor = best["pr_auc"] - best.get("standard_error", 0.0)
    within = [c for c in candidates if c[1]["pr_auc"] >= floor]
    kept, record = min(within, key=lambda c: (c[1].get("parameters", 0), -c[1]["pr_auc"], c[0]))
    return kept, {"rule": "one standard error", "best_trial": best_t, "best_pr_auc": best["pr_auc"],
                  "standard_error": best.get("standard_error", 0.0), "floor": floor,
                  "within": sorted(t for t, _ in within), "kept_trial": kept, "kept_pr_auc": record["pr_auc"],
                  "kept_parameters": record.get("parameters", 0)}


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
    parameters = sum(trainable_parameters(f.model) for f in models)  # the same for every held-out fit
    labels = [by_id[v].labels.matrix for v in train]
    per_behavior = [float(mean_pr_auc([y[:, [j]] for y in labels], [probs[v][:, [j]] for v in train]))
                    for j in range(len(cfg.data.behaviors))]
    scores = fits.scores([(v, 0, None) for v in train], probs)
    score = float(np.mean(scores))
    per_video = [float(np.nanmean(fits.scores([(v, 0, None)], probs))) for v in train]
    record = {"select": "inner_videos", "held_out": train, "epochs": epochs, "pr_auc": score,
              "per_behavior": per_behavior, "per_video": per_video, "standard_error": standard_error(per_video),
              "parameters": parameters}
    return replace(result, choice_score=score if np.isfinite(score) else -np.inf, choice_record=record,
                   validation_seconds=result.validation_seconds + seconds)
