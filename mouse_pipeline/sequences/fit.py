"""One fit: a head trained on a fold's training videos, early-stopped on its validation videos.

:func:`fit_trial` fits every head of one hyperparameter trial of one fold;
:class:`PackedHead` is a fitted head as it travels from a worker process to the parent
(the model as ``.keras`` bytes).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ..config import Config, TrainConfig
from ..dataset import VideoData
from ..folds import Fold
from ..metrics import mean_pr_auc
from .inference import predict_video
from .loader import WindowSequence, feature_statistics
from .models import build_model, check_window, load_model, positive_weights
from .search import head_seed, heads_for, search_trials, trial_config
from .windows import inference_stride

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """A fitted head (one model) with its validation record."""

    model: keras.Model
    outputs: list[int]
    history: dict[str, list[float]]
    best_epoch: int
    val_score: float
    fit_seconds: float
    mean: np.ndarray  # standardisation statistics of the training videos
    std: np.ndarray


def format_seconds(s: float) -> str:
    """``1h02m`` or ``3m07s``."""
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class EarlyStopOnValidation(keras.callbacks.Callback):
    """Score validation videos (whole, stitched) each epoch; keep the best weights."""

    def __init__(self, val_x, val_y, length, stride, patience, label, progress):
        super().__init__()
        self.val_x, self.val_y = val_x, val_y
        self.length, self.stride, self.patience = length, stride, patience
        self.label, self.progress = label, progress
        self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, 0, None, 0
        self.history: dict[str, list[float]] = {"loss": [], "val_pr_auc": []}
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
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
        per_epoch = (time.perf_counter() - self.t0) / (epoch + 1)
        total = self.params.get("epochs", epoch + 1)
        if self.progress:
            log.info("%s epoch %d/%d loss %.4f val PR-AUC %.3f (best %.3f @%d) ETA <= %s",
                     self.label, epoch + 1, total, self.history["loss"][-1], score, self.best,
                     self.best_epoch, format_seconds(per_epoch * (total - epoch - 1)))

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def fit_head(kind: str, tcfg: TrainConfig, train: list[VideoData], val: list[VideoData],
             outputs: list[int], seed: int, label: str, progress: bool) -> FitResult:
    """Fit one model on the training videos, early-stopped on the validation videos."""
    keras.utils.set_random_seed(seed)
    xs = [v.features for v in train]
    ys = [v.labels.matrix[:, outputs].astype(np.float32) for v in train]
    mean, std = feature_statistics(xs)
    pos_w = positive_weights([y.astype(np.int8) for y in ys])
    model = build_model(kind, tcfg, xs[0].shape[1], len(outputs), mean, std ** 2, pos_w)
    length = tcfg.window.length
    seq = WindowSequence(xs, ys, length, tcfg.window.stride, tcfg.batch_size, seed)
    monitor = EarlyStopOnValidation([v.features for v in val],
                                    [v.labels.matrix[:, outputs] for v in val],
                                    length, inference_stride(length, tcfg.window.inference_stride),
                                    tcfg.patience, label, progress)
    t0 = time.perf_counter()
    model.fit(seq, epochs=tcfg.epochs, verbose=0, callbacks=[monitor], shuffle=False)
    return FitResult(model, outputs, monitor.history, monitor.best_epoch, float(monitor.best),
                     time.perf_counter() - t0, mean, std)


def fit_trial(cfg: Config, kind: str, by_id: dict[str, VideoData], fold: Fold, t: int,
              params: dict[str, Any], label: str, progress: bool) -> list[FitResult]:
    """Fit the heads of trial ``t`` (hyperparameters ``params``) on one fold."""
    train = [by_id[v] for v in fold.train]
    val = [by_id[v] for v in fold.val]
    tcfg = trial_config(cfg, params)
    check_window(kind, tcfg)
    n_trials = len(search_trials(cfg))
    heads = []
    for h, outputs in enumerate(heads_for(cfg)):
        tag = f"{label} trial {t + 1}/{n_trials}" + (
            f" [{cfg.data.behaviors[outputs[0]]}]" if len(outputs) == 1 else "")
        heads.append(fit_head(kind, tcfg, train, val, outputs, head_seed(cfg, fold.index, t, h), tag, progress))
    return heads


@dataclass
class PackedHead:
    """A fitted head as it travels from a worker to the parent (the model as .keras bytes)."""

    model: bytes
    outputs: list[int]
    history: dict[str, list[float]]
    best_epoch: int
    val_score: float
    fit_seconds: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def pack(cls, head: FitResult) -> PackedHead:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "packed.keras"
            head.model.save(path)
            data = path.read_bytes()
        return cls(data, head.outputs, head.history, head.best_epoch, head.val_score,
                   head.fit_seconds, head.mean, head.std)

    def unpack(self) -> FitResult:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "packed.keras"
            path.write_bytes(self.model)
            model = load_model(path, compile=True)
        return FitResult(model, self.outputs, self.history, self.best_epoch, self.val_score,
                         self.fit_seconds, self.mean, self.std)
