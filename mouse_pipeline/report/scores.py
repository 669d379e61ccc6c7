"""Metric rows of a run (per fold, pooled, mean and std) and its cost: fit time,
inference speed, boundary jumps."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import CacheError
from ..features.store import cache_path, read_attrs
from ..metrics import binary_metrics, bout_metrics, summarize_folds
from ..postprocess import apply as apply_post
from ..sequences.windows import boundary_jump_summary
from ..streams import all_streams
from .data import ENSEMBLE, RunData

log = logging.getLogger(__name__)

FRAME_KEYS = ("accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc", "tp", "fp", "tn",
              "fn", "n_frames", "n_positive", "prevalence")
BOUT_KEYS = ("bout_precision", "bout_recall", "bout_f1", "bout_count_error",
             "bout_duration_error_s", "n_true_bouts", "n_pred_bouts")
POST_KEYS = ("threshold", "max_gap", "min_len")
CSV_COLUMNS = ("model", "behavior", "row", "fold", "stage", *FRAME_KEYS, *BOUT_KEYS, *POST_KEYS)
#: What a row of metrics.csv is: one fold, all folds pooled, the mean or std over folds, or
#: ``n``: over how many folds each metric was defined (the mean and std skip the others).
ROW_KINDS = ("fold", "pooled", "mean", "std", "n")
STAGES = ("raw", "post")


def predicted(probs: np.ndarray, post: dict[str, float], stage: str) -> np.ndarray:
    """0/1 predictions of one behaviour of one video for a stage (``raw`` or ``post``)."""
    if stage == "raw":
        return (probs >= post["threshold"]).astype(np.int8)
    return apply_post(probs[:, None], post["threshold"], post["max_gap"], post["min_len"])[:, 0]


def score_videos(y_true: Sequence[np.ndarray], binary: Sequence[np.ndarray],
                 ranking: dict[str, float], fps: Sequence[float]) -> dict[str, float]:
    """Frame metrics on the concatenated frames of some videos and bout metrics summed over them.

    Parameters
    ----------
    y_true
        Per video, ``(T_v,)`` labels (1, 0, -1 not annotated: excluded).
    binary
        Per video, ``(T_v,)`` 0/1 predictions.
    ranking
        ``pr_auc`` and ``roc_auc`` of the raw probabilities (they do not depend on a threshold).
    fps
        Per video, frames per second (bout durations in seconds).

    Returns
    -------
    dict
        :data:`FRAME_KEYS` and :data:`BOUT_KEYS`. Bouts are matched within each video
        (IoU >= 0.5), so a bout never spans two videos; predictions on frames not annotated
        are ignored.
    """
    yy = np.concatenate(y_true)
    out = binary_metrics(yy, np.concatenate(binary).astype(np.float64), 0.5)
    out["pr_auc"], out["roc_auc"] = ranking["pr_auc"], ranking["roc_auc"]
    n_true = n_pred = n_match = count_error = 0
    duration_error = 0.0
    for t, b, f in zip(y_true, binary, fps, strict=True):
        bm = bout_metrics((t == 1).astype(np.int8), np.where(t == -1, 0, b).astype(np.int8), fps=f)
        n_true, n_pred, n_match = n_true + bm["n_true"], n_pred + bm["n_pred"], n_match + bm["n_matched"]
        count_error += bm["count_error"]
        duration_error += bm["duration_error_s"]
    nan = float("nan")
    out.update({"bout_precision": n_match / n_pred if n_pred else nan,
                "bout_recall": n_match / n_true if n_true else nan,
                "bout_f1": 2 * n_match / (n_true + n_pred) if n_true + n_pred else nan,
                "bout_count_error": count_error, "bout_duration_error_s": duration_error,
                "n_true_bouts": n_true, "n_pred_bouts": n_pred})
    return out


def compute_metrics(data: RunData) -> dict[str, list[dict[str, Any]]]:
    """Rows per model x behaviour x fold x stage, pooled rows and mean/std rows over folds."""
    fold_rows: list[dict[str, Any]] = []
    pooled: list[dict[str, Any]] = []
    mean_std: list[dict[str, Any]] = []
    for name, results in data.models.items():
        for j, b in enumerate(data.behaviors):
            per_video = []  # (fold result, [(label, prob, fps) per test video])
            for fr in results:
                per_video.append((fr, [(data.labels[v].matrix[:, j], fr.test[v][:, j], data.fps[v])
                                       for v in fr.fold.test]))
            ranks = {fr.fold.index: _ranking(vids) for fr, vids in per_video}
            all_vids = [x for _, vids in per_video for x in vids]
            pooled_rank = _ranking(all_vids)
            for stage in STAGES:
                rows, binaries = [], []
                for fr, vids in per_video:
                    bins = [predicted(p, fr.post[b], stage) for _, p, _ in vids]
                    binaries += bins
                    score = score_videos([y for y, _, _ in vids], bins, ranks[fr.fold.index],
                                         [f for _, _, f in vids])
                    rows.append({"model": name, "behavior": b, "row": "fold", "fold": fr.fold.index, "stage": stage,
                                 **score, **{k: fr.post[b][k] for k in POST_KEYS if stage == "post" or k == "threshold"}})
                fold_rows += rows
                score = score_videos([y for y, _, _ in all_vids], binaries, pooled_rank,
                                     [f for _, _, f in all_vids])
                pooled.append({"model": name, "behavior": b, "row": "pooled", "fold": "pooled", "stage": stage,
                               **score})
                summary = summarize_folds([{k: r[k] for k in FRAME_KEYS + BOUT_KEYS} for r in rows])
                for stat in ("mean", "std", "n"):
                    mean_std.append({"model": name, "behavior": b, "row": stat, "fold": stat, "stage": stage,
                                     **{k: summary[k][stat] for k in FRAME_KEYS + BOUT_KEYS}})
    return {"folds": fold_rows, "pooled": pooled, "mean_std": mean_std}


def metrics_csv_rows(metrics: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of ``metrics.csv``: :data:`CSV_COLUMNS` of every fold, pooled and mean/std row.

    ``row`` says which kind (:data:`ROW_KINDS`); ``fold`` holds the fold index on fold
    rows only and is empty on the others, so the column is numeric. Keys a row lacks
    (post-processing on pooled rows, say) are empty cells.
    """
    rows = metrics["folds"] + metrics["pooled"] + metrics["mean_std"]
    return [{**{k: r.get(k, "") for k in CSV_COLUMNS}, "fold": r["fold"] if r["row"] == "fold" else ""}
            for r in rows]


def _ranking(vids: list[tuple[np.ndarray, np.ndarray, float]]) -> dict[str, float]:
    m = binary_metrics(np.concatenate([y for y, _, _ in vids]), np.concatenate([p for _, p, _ in vids]), 0.5)
    return {"pr_auc": m["pr_auc"], "roc_auc": m["roc_auc"]}


def cost_rows(data: RunData) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per backbone: extraction speed and weights; per model: training, inference, jump ratio."""
    nan = float("nan")
    backbones = []
    for b in all_streams([n.split("/")[0] for n in data.models if n != ENSEMBLE]):  # per stream
        speeds, weights = [], set()
        for vid in data.labels:
            path = cache_path(data.cfg.extract.cache, b, vid)
            if not path.is_file():
                continue
            try:
                attrs = read_attrs(path)
            except CacheError as err:
                log.warning("%s", err)
                continue
            if attrs.get("extract_frames_per_s"):
                speeds.append(float(attrs["extract_frames_per_s"]))
            if attrs.get("weights"):
                weights.add(str(attrs["weights"]))
        backbones.append({"backbone": b, "extract_frames_per_s": float(np.mean(speeds)) if speeds else nan,
                          "videos_recorded": len(speeds), "videos": len(data.labels),
                          "weights": ", ".join(sorted(weights)) or None})
    models = []
    for name, results in data.models.items():
        members = data.ensemble_members if name == ENSEMBLE else [name]
        fit = [fr.timings.get("fit_seconds") for m in members for fr in data.models[m]]
        per_model_speed = []
        for m in members:
            speeds = [fr.timings.get("inference_frames_per_s") for fr in data.models[m]]
            speeds = [float(s) for s in speeds if s]
            per_model_speed.append(float(np.mean(speeds)) if speeds else nan)
        # members run one after the other: their times per frame add up
        inference = 1.0 / sum(1.0 / s for s in per_model_speed) if all(s > 0 for s in per_model_speed) else nan
        # each fold's own window grid (a search may choose different window lengths)
        jumps = boundary_jump_summary([(p, fr.meta["window"], fr.meta["inference_stride"])
                                       for fr in results if fr.meta.get("window") and fr.meta.get("inference_stride")
                                       for p in fr.test.values()])
        models.append({"model": name,
                       "train_minutes": sum(float(s) for s in fit) / 60 if fit and all(s is not None for s in fit) else nan,
                       "inference_frames_per_s": inference,
                       "boundary_jump_ratio": jumps["ratio"],
                       "boundary_jump_chance_low": jumps["chance_low"],
                       "boundary_jump_chance_high": jumps["chance_high"]})
    return backbones, models


