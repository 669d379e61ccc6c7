"""One trial's fits: heads trained on a fold's training side and validated as it says.

:func:`fit_trial` fits every head of one hyperparameter trial of one fold, validated by
``fold.validation`` (:mod:`mouse_pipeline.folds`):

``videos``
    one fit per head, early-stopped on the validation videos (the kept weights are the
    fold's model);
``inner_folds``
    one fit per head and inner fold, early-stopped on its held-out group, whose videos it
    then predicts (inner out-of-fold probabilities); the trial's score is the mean PR-AUC
    of those; then a *refit* per head on every training video for the median of the inner
    best epochs, without early stopping: the refit is the fold's model;
``blocks``
    one fit per head on the training videos without their validation blocks and a gap of
    one window either side, early-stopped on the blocks; with ``train.blocks.refit`` (the
    default) a refit on every training frame for the best epoch follows.

What the fits give back (:class:`FitResult`, :class:`TrialResult`, :class:`PackedHead`:
a head as ``.keras`` bytes between processes) is :mod:`.results`'s, re-exported here.
With ``train.search.early_stop: asha`` every fit that validates may be stopped at a rung
epoch by :mod:`.asha` (on its own validation scores), which ends its trial.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import keras
import numpy as np

from ..config import Config, TrainConfig
from ..dataset import VideoData
from ..errors import ConfigError
from ..folds import Fold, block_training_ranges
from ..metrics import mean_pr_auc
from .asha import FitPruner, Pruned, Rungs, fit_key
from .converged import fit_linear, uses_lbfgs
from .inference import predict_heads, predict_video
from .loader import WindowSequence, feature_statistics
from .models import build_model, positive_weights
from .results import FitResult, TrialResult, format_seconds
from .results import PackedHead as PackedHead  # re-exported
from .search import Trial, check_window, head_seed, heads_for, trial_config, validation_seed
from .windows import inference_stride

log = logging.getLogger(__name__)


class EarlyStopOnValidation(keras.callbacks.Callback):
    """Score validation videos (whole, stitched) each epoch; keep the best weights.

    ``prune`` (ASHA, :class:`.asha.FitPruner`) is told each epoch's score and may stop the fit."""

    def __init__(self, val_x, val_y, length, stride, patience, label, progress, prune=None):
        super().__init__()
        self.prune, self.pruned_at = prune, 0
        self.val_x, self.val_y = val_x, val_y
        self.length, self.stride, self.patience = length, stride, patience
        self.label, self.progress = label, progress
        self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, 0, None, 0
        self.history: dict[str, list[float]] = {"loss": [], "val_pr_auc": []}
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if not self.val_x:  # a refit: every epoch runs, the last weights are kept
            self.history["loss"].append(float((logs or {}).get("loss", np.nan)))
            self.best_epoch = epoch + 1
            if self.progress:
                log.info("%s epoch %d/%d loss %.4f", self.label, epoch + 1,
                         self.params.get("epochs", epoch + 1), self.history["loss"][-1])
            return
        probs = [predict_video(self.model, x, self.length, self.stride) for x in self.val_x]
        score = mean_pr_auc(self.val_y, probs)
        score = -np.inf if not np.isfinite(score) else score
        self.history["loss"].append(float((logs or {}).get("loss", np.nan)))
        self.history["val_pr_auc"].append(float(score))
        if score > self.best + 1e-6:
            self.best, self.best_epoch, self.wait = score, epoch + 1, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
        if self.prune is not None and self.prune(epoch + 1, score):
            self.pruned_at, self.model.stop_training = epoch + 1, True
            log.info("%s pruned by ASHA at epoch %d (val PR-AUC %.3f)", self.label, epoch + 1, score)
        per_epoch = (time.perf_counter() - self.t0) / (epoch + 1)
        total = self.params.get("epochs", epoch + 1)
        if self.progress:
            log.info("%s epoch %d/%d loss %.4f val PR-AUC %.3f (best %.3f @%d) ETA <= %s",
                     self.label, epoch + 1, total, self.history["loss"][-1], score, self.best,
                     self.best_epoch, format_seconds(per_epoch * (total - epoch - 1)))

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class FrameRange:
    """Frames ``start..stop-1`` of a frame source (a cache file read as needed), sliced
    like an array of them: a block of a video trains or validates as a video of its own."""

    def __init__(self, source: Any, start: int, stop: int) -> None:
        self.source, self.start = source, int(start)
        self.shape = (int(stop) - int(start), int(source.shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"FrameRange takes slices of frames, got {key!r}")
        a, b, _ = key.indices(self.shape[0])
        return self.source[self.start + a:self.start + max(a, b)]


def video_part(video: VideoData, start: int = 0, stop: int | None = None) -> tuple[Any, np.ndarray]:
    """``(features, label matrix)`` of frames ``start..stop-1`` of a video (all: the video's own)."""
    if start == 0 and (stop is None or stop == video.n_frames):
        return video.features, video.labels.matrix
    stop = video.n_frames if stop is None else stop
    x = video.features[start:stop] if isinstance(video.features, np.ndarray) else \
        FrameRange(video.features, start, stop)
    return x, video.labels.matrix[start:stop]


def fit_head(kind: str, tcfg: TrainConfig, train: list[VideoData], val: list[VideoData],
             outputs: list[int], seed: int, label: str, progress: bool) -> FitResult:
    """Fit one model on the training videos, early-stopped on the validation videos."""
    return fit_parts(kind, tcfg, [video_part(v) for v in train], [video_part(v) for v in val],
                     outputs, seed, label, progress, stream_dims=train[0].stream_dims)


def fit_parts(kind: str, tcfg: TrainConfig, train: list[tuple[Any, np.ndarray]],
              val: list[tuple[Any, np.ndarray]], outputs: list[int], seed: int, label: str,
              progress: bool, epochs: int | None = None, stream_dims: tuple[int, ...] = (),
              prune: Any = None) -> FitResult:
    """Fit one model on ``(features, labels)`` parts, early-stopped on the ``val`` parts.

    With ``epochs`` (and no ``val``): exactly that many epochs, the last weights kept (a
    refit on everything); ``best_epoch`` is then ``epochs`` and ``val_score`` NaN.
    ``stream_dims``: the input set's stream widths (for ``train.fusion.projection``);
    ``prune``: ASHA's decision after each epoch (:class:`.asha.FitPruner`), or None.
    ``linear`` with ``train.linear.solver: lbfgs`` is fitted to convergence instead
    (:func:`.converged.fit_linear`; ``epochs`` does not apply).
    """
    if uses_lbfgs(kind, tcfg):
        return fit_linear(tcfg, train, val, outputs, seed, label, progress, stream_dims)
    keras.utils.set_random_seed(seed)
    xs = [x for x, _ in train]
    ys = [y[:, outputs].astype(np.float32) for _, y in train]
    mean, std = feature_statistics(xs)
    pos_w = positive_weights([y.astype(np.int8) for y in ys])
    model = build_model(kind, tcfg, xs[0].shape[1], len(outputs), mean, std ** 2, pos_w, stream_dims)
    length = tcfg.window.length
    seq = WindowSequence(xs, ys, length, tcfg.window.stride, tcfg.batch_size, seed)
    monitor = EarlyStopOnValidation([x for x, _ in val], [y[:, outputs] for _, y in val],
                                    length, inference_stride(length, tcfg.window.inference_stride),
                                    tcfg.patience, label, progress, prune)
    t0 = time.perf_counter()
    model.fit(seq, epochs=tcfg.epochs if epochs is None else epochs, verbose=0, callbacks=[monitor],
              shuffle=False)
    return FitResult(model, outputs, monitor.history, monitor.best_epoch,
                     float(monitor.best) if val else float("nan"), time.perf_counter() - t0, mean, std,
                     monitor.pruned_at)


def trial_score(head_scores: list[float]) -> float:
    """A trial's validation score from its heads' PR-AUCs: their mean over the heads that
    could be scored, as :func:`~mouse_pipeline.metrics.mean_pr_auc` averages a joint head
    over the behaviours with a positive frame; ``-inf`` when none could.

    A head whose behaviour has no positive validation frame scores ``-inf`` (or NaN); left in
    the mean, it would make every trial of the fold ``-inf``, and the first trial would be
    kept whatever the other heads scored.
    """
    scored = [float(s) for s in head_scores if np.isfinite(s)]
    return float(np.mean(scored)) if scored else -np.inf


def chosen_epochs(best_epochs: list[int]) -> int:
    """The refit's epochs from the inner fits' best epochs: their median, halves rounded up."""
    return max(1, int(np.floor(np.median(best_epochs) + 0.5)))


def _kept_epoch(f: FitResult) -> int:
    """The epoch whose weights a fit kept: its best, or its last when no epoch scored."""
    return f.best_epoch or len(f.history["loss"])


class _TrialFits:
    """What every fit of one trial of one fold shares: settings, heads, seeds, labels."""

    def __init__(self, cfg: Config, trial: Trial, n_trials: int, by_id: dict[str, VideoData], fold: Fold,
                 label: str, progress: bool, rungs: Rungs | None = None) -> None:
        self.cfg, self.trial, self.by_id, self.fold, self.progress = cfg, trial, by_id, fold, progress
        self.rungs, self.reached = rungs, {}
        self.tcfg = trial_config(cfg, trial.params)
        check_window(trial.kind, self.tcfg)
        self.heads = heads_for(cfg)
        self.tag = f"{label} trial {trial.index + 1}/{n_trials}"
        self.stream_dims = next(iter(by_id.values())).stream_dims if by_id else ()

    def head_tag(self, outputs: list[int], what: str = "") -> str:
        return self.tag + what + (f" [{self.cfg.data.behaviors[outputs[0]]}]" if len(outputs) == 1 else "")

    def seed(self, h: int, fit: int | None = None) -> int:
        """The fold's own model: :func:`head_seed`; a fit that only validates: its own."""
        if fit is None:
            return head_seed(self.cfg, self.fold.index, self.trial.seed_index, h)
        return validation_seed(self.cfg, self.fold.index, self.trial.seed_index, h, fit)

    def fit(self, train: list, val: list, what: str, fit: int | None = None) -> list[FitResult]:
        """Every head fitted; :class:`.asha.Pruned` when ASHA stops one (the trial ends there)."""
        out = []
        for h, o in enumerate(self.heads):
            key = fit_key(h, fit)
            prune = FitPruner(self.rungs, key) if self.rungs is not None else None
            out.append(fit_parts(self.trial.kind, self.tcfg, train, val, o, self.seed(h, fit),
                                 self.head_tag(o, what), self.progress, stream_dims=self.stream_dims, prune=prune))
            if prune is not None:
                self.reached[key] = prune.reached()
            if out[-1].pruned_at:
                raise Pruned(key, out[-1].pruned_at, out[-1].val_score)
        return out

    def predict(self, fits: list[FitResult], x: Any) -> np.ndarray:
        length = self.tcfg.window.length
        return predict_heads([(f.outputs, f.model) for f in fits], x, length,
                             inference_stride(length, self.tcfg.window.inference_stride),
                             len(self.cfg.data.behaviors))

    def scores(self, segments: list[tuple[str, int, int | None]], probs: dict[str, np.ndarray]) -> list[float]:
        labels = [self.by_id[v].labels.matrix[a:b] for v, a, b in segments]
        return [float(mean_pr_auc([y[:, o] for y in labels], [probs[v][:, o] for v, _, _ in segments]))
                for o in self.heads]


def fit_trial(cfg: Config, trial: Trial, n_trials: int, by_id: dict[str, VideoData], fold: Fold,
              label: str, progress: bool, rungs: Rungs | None = None) -> TrialResult:
    """Fit the heads of one trial on one fold, validated as ``fold.validation`` says
    (a refit, where the mode has one, is left to :func:`refit_trial`); with ``rungs``,
    ASHA may stop it (:mod:`.asha`): a pruned trial, scored by the fit that was stopped."""
    fits = _TrialFits(cfg, trial, n_trials, by_id, fold, label, progress, rungs)
    try:
        if fold.validation == "videos":
            heads = fits.fit([video_part(by_id[v]) for v in fold.train], [video_part(by_id[v]) for v in fold.val], "")
            result = TrialResult(heads, trial_score([h.val_score for h in heads]))
        else:
            result = _inner_folds(fits) if fold.validation == "inner_folds" else _blocks(fits)
    except Pruned as p:
        record = {"pruned": {"fit": p.key, "epoch": p.epoch, "val_pr_auc": p.score}, "rungs": fits.reached}
        return TrialResult([], p.score, record=record, rungs=fits.reached, pruned=True)
    if rungs is not None:
        result = replace(result, record={**result.record, "rungs": fits.reached}, rungs=fits.reached)
    return result


def refit_trial(cfg: Config, trial: Trial, n_trials: int, by_id: dict[str, VideoData], fold: Fold,
                epochs: list[int], label: str, progress: bool) -> list[FitResult]:
    """The fold's heads: each refitted on every training video for its chosen epochs,
    without early stopping (nothing is left to validate on), the last weights kept."""
    fits = _TrialFits(cfg, trial, n_trials, by_id, fold, label, progress)
    train = [video_part(by_id[v]) for v in fold.train]
    return [fit_parts(trial.kind, fits.tcfg, train, [], o, fits.seed(h), fits.head_tag(o, " refit"), progress,
                      epochs=epochs[h], stream_dims=fits.stream_dims) for h, o in enumerate(fits.heads)]


def _inner_folds(fits: _TrialFits) -> TrialResult:
    """k inner fits (early-stopped on their held-out group) and the training videos' inner
    out-of-fold probabilities; the refit's epochs: the median of the inner best epochs."""
    fold, by_id = fits.fold, fits.by_id
    oof: dict[str, np.ndarray] = {}
    inner, seconds = [], 0.0
    best: list[list[int]] = [[] for _ in fits.heads]
    for i, group in enumerate(fold.inner):
        val = [video_part(by_id[v]) for v in group]
        models = fits.fit([video_part(by_id[v]) for v in fold.train if v not in group], val,
                          f" inner {i + 1}/{len(fold.inner)}", fit=i)
        for v, (x, _) in zip(group, val, strict=True):
            oof[v] = fits.predict(models, x)
        for h, f in enumerate(models):
            best[h].append(_kept_epoch(f))
        seconds += sum(f.fit_seconds for f in models)
        inner.append({"validated": list(group), "best_epochs": [f.best_epoch for f in models],
                      "val_pr_auc": [f.val_score for f in models],
                      "val_curves": [f.history["val_pr_auc"] for f in models]})
    scores = fits.scores(list(fold.val_segments), oof)
    epochs = [chosen_epochs(b) for b in best]
    record = {"validation": "inner_folds", "inner": inner, "chosen_epochs": epochs,
              "epoch_rule": "median of the inner fits' best epochs (halves up)", "val_pr_auc": scores,
              "refit": True}
    return TrialResult([], trial_score(scores), oof, record, epochs, scores, seconds)


def _blocks(fits: _TrialFits) -> TrialResult:
    """One fit on the training videos without their validation blocks (and a gap of one
    window either side), early-stopped on the blocks; with ``train.blocks.refit`` its best
    epoch is the refit's, otherwise it is the fold's model."""
    fold, by_id, tcfg = fits.fold, fits.by_id, fits.tcfg
    gap, refit = tcfg.window.length, fits.cfg.train.blocks.refit
    ranges = block_training_ranges(fold, {v: by_id[v].n_frames for v in fold.train}, gap)
    train = [video_part(by_id[v], a, b) for v, a, b in ranges]
    if sum(len(x) for x, _ in train) < gap:
        raise ConfigError(f"fold {fold.index}: without its validation blocks and a gap of "
                          f"train.window.length={gap} frames either side, fewer than one window of "
                          "training frames is left; use a larger train.blocks.k or a shorter window")
    val = [video_part(by_id[v], a, b) for v, a, b in fold.blocks]
    models = fits.fit(train, val, " blocks", fit=0 if refit else None)
    probs = {v: fits.predict(models, x) for (v, _, _), (x, _) in zip(fold.blocks, val, strict=True)}
    scores = [f.val_score for f in models]
    epochs = [_kept_epoch(f) for f in models]
    record = {"validation": "blocks", "gap": gap, "training_ranges": [list(r) for r in ranges],
              "best_epochs": [f.best_epoch for f in models], "val_curves": [f.history["val_pr_auc"] for f in models],
              "val_pr_auc": scores, "refit": refit, **({"chosen_epochs": epochs} if refit else {})}
    if refit:
        return TrialResult([], trial_score(scores), probs, record, epochs, scores,
                           float(sum(f.fit_seconds for f in models)))
    return TrialResult(models, trial_score(scores), probs, record, None, scores)
