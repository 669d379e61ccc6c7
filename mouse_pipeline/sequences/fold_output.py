"""A unit's fold folder from its kept trial: post-processing, test predictions, the records.

:func:`write_unit` is the last step of a unit (:mod:`.scheduler`): thresholds and
post-processing are chosen on the fold's validation probabilities (the kept heads' on the
validation videos, or those the validating fits made: inner out-of-fold predictions,
validation blocks), never on a test video's; then the test videos' probabilities (made
once, by :func:`fold_probabilities`), the models, and the records are committed through
the run folder's atomic fold writer.

:func:`fold_probabilities` is the one part that runs the models. A local run calls it
from :func:`write_unit`; under ``--ray`` a worker calls it (the scheduler's ``output``
task) and the driver passes what came back to :func:`write_unit` with the heads still
packed, so the driver writes the fold without TensorFlow. Predicting the test videos
before or after the choice changes nothing: the choice reads the validation
probabilities only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Config, TrainConfig
from ..dataset import VideoData
from ..fileio import write_bytes
from ..folds import Fold
from ..postprocess import choose_postprocess_per_behavior
from ..runs import RunFolder
from .results import PackedHead, TrialResult
from .search import Trial, trial_config
from .windows import inference_stride

if TYPE_CHECKING:
    from .scheduler import Unit


@dataclass
class FoldProbabilities:
    """What a fold's kept heads predict: the validation videos (None when the validating fits
    made the validation probabilities), the test videos, and the seconds the test ones took."""

    val: dict[str, np.ndarray] | None
    test: dict[str, np.ndarray]
    infer_s: float


def fold_probabilities(cfg: Config, fold: Fold, heads: list[Any], trial: Trial, by_id: dict[str, VideoData],
                       validation: bool) -> FoldProbabilities:
    """The fold's probabilities from its kept heads (``FitResult``; ``validation``: also the
    validation videos'); the validation ones first, as the choice comes before the test videos."""
    from .inference import predict_heads

    tcfg: TrainConfig = trial_config(cfg, trial.params)
    length, n = tcfg.window.length, len(cfg.data.behaviors)
    stride = inference_stride(length, tcfg.window.inference_stride)

    def predict(v: str) -> np.ndarray:
        return predict_heads([(h.outputs, h.model) for h in heads], by_id[v].features, length, stride, n)

    val = {v: predict(v) for v in fold.val} if validation else None
    t0 = time.perf_counter()
    test = {v: predict(v) for v in fold.test}
    return FoldProbabilities(val, test, time.perf_counter() - t0)


def _save_head(head: Any, path: Any) -> None:
    """A head's model file: the bytes its worker saved, or the model saved here (atomic either way)."""
    if isinstance(head, PackedHead):
        write_bytes(path, head.model)
        return
    from .models import save_model

    save_model(head.model, path)


def write_unit(cfg: Config, run: RunFolder, unit: Unit, result: TrialResult, trial: Trial,
               trials: list[dict[str, Any]], by_id: dict[str, VideoData], search: dict[str, Any],
               probs: FoldProbabilities | None = None) -> None:
    """Choose post-processing on validation, commit the fold folder with the test videos' probabilities.

    ``probs``: what :func:`fold_probabilities` gave in a worker (``result``'s heads may then
    be :class:`.results.PackedHead`); None: it is called here.
    """
    behaviors, fold, heads, params = list(cfg.data.behaviors), unit.fold, result.heads, trial.params
    tcfg: TrainConfig = trial_config(cfg, params)
    length = tcfg.window.length
    stride = inference_stride(length, tcfg.window.inference_stride)
    if probs is None:
        probs = fold_probabilities(cfg, fold, heads, trial, by_id, result.val_probs is None)
    # validation probabilities: the kept heads' on validation videos, or those the
    # validating fits made (inner out-of-fold, blocks); never a test video's
    val_probs = probs.val if result.val_probs is None else result.val_probs
    segments = fold.val_segments
    post = choose_postprocess_per_behavior(behaviors, [by_id[v].labels.matrix[a:b] for v, a, b in segments],
                                           [val_probs[v] for v, _, _ in segments],
                                           list(cfg.postprocess.max_gap), list(cfg.postprocess.min_len))
    n_test, infer_s = sum(by_id[v].n_frames for v in fold.test), probs.infer_s
    with run.fold_writer(unit.backbone, unit.kind, fold.index) as w:
        w.write_probs(behaviors, {"val": val_probs, "test": probs.test})
        for h in heads:
            _save_head(h, w.model_path(None if len(heads) == 1 else behaviors[h.outputs[0]]))
        w.write_normalization(heads[0].mean, heads[0].std)
        w.write_records(post, {
            "heads": [{"outputs": [behaviors[i] for i in h.outputs], "best_epoch": h.best_epoch,
                       "val_pr_auc": result.head_scores[j] if result.head_scores else h.val_score,
                       **h.history} for j, h in enumerate(heads)],
            "search": search, "trials": trials, "params": params,
            **({"kind": trial.kind, "selected_on": cfg.train.auto.select} if unit.kind == "auto" else {}),
            **({"validation": result.record} if result.record else {})}, {
            "fit_seconds": float(sum(h.fit_seconds for h in heads) + result.validation_seconds),
            "best_epochs": [h.best_epoch for h in heads],
            "inference_frames_per_s": float(n_test / infer_s) if n_test and infer_s > 0 else None,
            "train_frames": int(sum(by_id[v].n_frames for v in fold.train))},
            {**fold.to_dict(), "window": length, "inference_stride": stride})
