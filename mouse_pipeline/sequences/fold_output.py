"""A unit's fold folder from its kept trial: post-processing, test predictions, the records.

:func:`write_unit` is the last step of a unit (:mod:`.scheduler`): thresholds and
post-processing are chosen on the fold's validation probabilities (the kept heads' on the
validation videos, or those the validating fits made: inner out-of-fold predictions,
validation blocks), never on a test video's; then the test videos are predicted once, and
models, probabilities and records are committed through the run folder's atomic fold
writer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import Config, TrainConfig
from ..dataset import VideoData
from ..postprocess import choose_postprocess_per_behavior
from ..runs import RunFolder
from .fit import TrialResult
from .inference import predict_heads
from .models import save_model
from .search import Trial, trial_config
from .windows import inference_stride

if TYPE_CHECKING:
    from .scheduler import Unit


def write_unit(cfg: Config, run: RunFolder, unit: Unit, result: TrialResult, trial: Trial,
               trials: list[dict[str, Any]], by_id: dict[str, VideoData], search: dict[str, Any]) -> None:
    """Choose post-processing on validation, predict test videos, commit the fold folder."""
    behaviors, fold, heads, params = list(cfg.data.behaviors), unit.fold, result.heads, trial.params
    tcfg: TrainConfig = trial_config(cfg, params)
    length = tcfg.window.length
    stride = inference_stride(length, tcfg.window.inference_stride)

    def predict(v: str) -> np.ndarray:
        return predict_heads([(h.outputs, h.model) for h in heads], by_id[v].features, length, stride,
                             len(behaviors))

    # validation probabilities: the kept heads' on validation videos, or those the
    # validating fits made (inner out-of-fold, blocks); never a test video's
    val_probs = {v: predict(v) for v in fold.val} if result.val_probs is None else result.val_probs
    segments = fold.val_segments
    post = choose_postprocess_per_behavior(behaviors, [by_id[v].labels.matrix[a:b] for v, a, b in segments],
                                           [val_probs[v] for v, _, _ in segments],
                                           list(cfg.postprocess.max_gap), list(cfg.postprocess.min_len))
    t0 = time.perf_counter()
    test_probs = {v: predict(v) for v in fold.test}
    infer_s = time.perf_counter() - t0
    n_test = sum(by_id[v].n_frames for v in fold.test)
    with run.fold_writer(unit.backbone, unit.kind, fold.index) as w:
        w.write_probs(behaviors, {"val": val_probs, "test": test_probs})
        for h in heads:
            save_model(h.model, w.model_path(None if len(heads) == 1 else behaviors[h.outputs[0]]))
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
