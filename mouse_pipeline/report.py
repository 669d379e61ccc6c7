"""The evaluation a scientist reads: metrics tables, figures, report.html and report.md.

:func:`write_report` reads only a run folder (layout in :mod:`mouse_pipeline.sequences.training`)
and the label files its config names. Every number is computed on out-of-fold *test*
frames (``probs.h5`` ``test/<video>``), frames not annotated (``-1``) left out; thresholds,
early stopping and post-processing come from each fold's validation videos.

Models of a run are the ``<backbone>/<model>`` folders holding ``fold_<i>`` folders
(``final`` and ``*.partial`` are ignored). A model with fewer fold folders than
``folds.json`` has folds is incomplete: it is named in the report and left out of it.
When two or more models are complete an ``ensemble`` is added: per fold, the mean of
their probabilities, with thresholds and post-processing chosen on the fold's
*validation* probabilities (never on test).

Written into the run folder (each file under a temporary name, then renamed):

``metrics.csv``
    One row per model x behaviour x fold x stage, plus ``fold`` = ``pooled`` (all test
    frames of all folds together, each fold judged with its own threshold), ``mean`` and
    ``std`` (over folds). Stage ``raw``: the validation threshold; ``post``: threshold,
    gap closing and minimum bout length. Columns: :data:`CSV_COLUMNS`. Bout metrics are
    summed over videos (a bout never spans two videos); a bout is a run of annotated
    present frames, and predictions on frames not annotated are ignored. PR-AUC and
    ROC-AUC rank the raw probabilities, so they are the same for both stages. Per-fold
    rows also hold the fold's ``threshold`` (and, for ``post``, ``max_gap`` and ``min_len``).
``metrics.json``
    ``{"version": 1, "run", "models", "behaviors", "incomplete_models": {name: folds
    done}, "ensemble": {"members", "postprocess": [{fold, behavior, threshold, max_gap,
    min_len}]} or null, "pooled": [rows], "folds": [rows], "mean_std": [rows], "cost":
    {"backbones": [...], "models": [...]}}``; rows are the CSV rows as objects (``NaN`` as
    ``null``; ``fold`` is the fold index in ``folds`` rows).
``report.html``
    Self-contained (figures embedded as base64 PNG, inline CSS, no script).
``report.md`` and ``figures/``
    The same report as Markdown, figures as PNG files beside it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import h5py
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from . import __version__
from .annotations import Labels, check_length, read_labels
from .config import Config
from .dataset import label_file
from .errors import CacheError, RunError
from .features.store import cache_path, read_attrs, sanitize_id
from .folds import Fold, load_folds
from .metrics import binary_metrics, bout_metrics, pr_curve, summarize_folds
from .plots import ethogram_figure, png_bytes
from .postprocess import apply as apply_post
from .postprocess import choose_postprocess
from .predict import load_run_config
from .scoring import write_rows_csv
from .sequences.windows import boundary_jump_summary, window_starts

log = logging.getLogger(__name__)

# The thesis's published test figures (de Juan Pulido 2022), as printed by the final
# evaluation cell of its four classification notebooks (xavi2411/AutomatedMouseBehaviorRecognition,
# notebooks/2.2.1, 2.2.2, 2.3.1, 2.3.2, commit 4d220d6). 17 videos, 5 test videos (33,000
# frames), ImageNet features, one binary model per behaviour, threshold 0.5; PR-AUC is Keras's
# interpolated AUC(curve="PR"). The test videos also served for early stopping, so these
# figures are optimistic. Rounded to 3 decimals. Layout: {thesis model: {behaviour: {metric:
# value}}} with the metrics accuracy, precision, recall, pr_auc. Empty: the report says that
# the figures are not included.
THESIS_FIGURES: dict[str, dict[str, dict[str, float]]] = {
    "ResNet50V2 + LSTM": {
        "grooming": {"accuracy": 0.902, "precision": 0.412, "recall": 0.946, "pr_auc": 0.679},
        "mid_rearing": {"accuracy": 0.897, "precision": 0.518, "recall": 0.797, "pr_auc": 0.702},
        "wall_rearing": {"accuracy": 0.918, "precision": 0.671, "recall": 0.785, "pr_auc": 0.792}},
    "InceptionResNetV2 + LSTM": {
        "grooming": {"accuracy": 0.909, "precision": 0.426, "recall": 0.876, "pr_auc": 0.690},
        "mid_rearing": {"accuracy": 0.902, "precision": 0.535, "recall": 0.748, "pr_auc": 0.691},
        "wall_rearing": {"accuracy": 0.914, "precision": 0.668, "recall": 0.737, "pr_auc": 0.770}},
    "ResNet50V2 + TCN": {
        "grooming": {"accuracy": 0.950, "precision": 0.681, "recall": 0.537, "pr_auc": 0.589},
        "mid_rearing": {"accuracy": 0.887, "precision": 0.415, "recall": 0.104, "pr_auc": 0.201},
        "wall_rearing": {"accuracy": 0.840, "precision": 0.433, "recall": 0.570, "pr_auc": 0.411}},
    "InceptionResNetV2 + TCN": {
        "grooming": {"accuracy": 0.942, "precision": 0.577, "recall": 0.635, "pr_auc": 0.586},
        "mid_rearing": {"accuracy": 0.912, "precision": 0.592, "recall": 0.596, "pr_auc": 0.602},
        "wall_rearing": {"accuracy": 0.888, "precision": 0.569, "recall": 0.739, "pr_auc": 0.716}},
}
# The model of this project that corresponds to each thesis model (for "ours" beside it).
THESIS_MODEL_NAMES = {"ResNet50V2 + LSTM": "resnet50v2/lstm",
                      "InceptionResNetV2 + LSTM": "inception_resnet_v2/lstm",
                      "ResNet50V2 + TCN": "resnet50v2/tcn",
                      "InceptionResNetV2 + TCN": "inception_resnet_v2/tcn"}
THESIS_LABEL = "different data (thesis: 17 videos, ImageNet features)"

ENSEMBLE = "ensemble"
FRAME_KEYS = ("accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc", "tp", "fp", "tn",
              "fn", "n_frames", "n_positive", "prevalence")
BOUT_KEYS = ("bout_precision", "bout_recall", "bout_f1", "bout_count_error",
             "bout_duration_error_s", "n_true_bouts", "n_pred_bouts")
POST_KEYS = ("threshold", "max_gap", "min_len")
CSV_COLUMNS = ("model", "behavior", "fold", "stage", *FRAME_KEYS, *BOUT_KEYS, *POST_KEYS)
STAGES = ("raw", "post")
MAX_ETHOGRAMS = 12
_FOLD_DIR = re.compile(r"fold_(\d+)")


# --------------------------------------------------------------------------- run data


@dataclass
class FoldResult:
    """What one model produced in one fold: probabilities and the fold's records."""

    fold: Fold
    test: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    post: dict[str, dict[str, float]]
    history: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunData:
    """Everything the report needs, read from a run folder and its label files."""

    run: Path
    cfg: Config
    folds: list[Fold]
    behaviors: tuple[str, ...]
    models: dict[str, list[FoldResult]]
    incomplete: dict[str, int]
    labels: dict[str, Labels]
    fps: dict[str, float]
    ensemble_members: list[str] = field(default_factory=list)
    ensemble_note: str = ""


def find_models(run: Path) -> dict[str, list[int]]:
    """The ``backbone/model`` folders of a run and the fold indices finished in each.

    A folder counts when it holds ``fold_<i>`` or ``fold_<i>.partial`` folders; ``final``
    and ``*.partial`` folders are not finished folds.
    """
    found: dict[str, list[int]] = {}
    for bdir in sorted(p for p in run.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for mdir in sorted(p for p in bdir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            subs = [p.name for p in mdir.iterdir() if p.is_dir()]
            done = sorted(int(m.group(1)) for s in subs if (m := _FOLD_DIR.fullmatch(s)))
            started = any(s.endswith(".partial") and _FOLD_DIR.fullmatch(s[:-8]) for s in subs)
            if done or started:
                found[f"{bdir.name}/{mdir.name}"] = done
    return found


def load_run(run_dir: str | Path) -> RunData:
    """Read folds, the complete models' fold results, labels and frame rates of a run.

    Raises
    ------
    RunError
        No config, no ``folds.json``, no finished model, a fold folder without its
        probabilities, or records that disagree with ``folds.json``.
    """
    run = Path(run_dir)
    cfg = load_run_config(run)
    if not (run / "folds.json").is_file():
        raise RunError(f"{run}: no folds.json, so nothing was trained here; run `mouse-pipeline train` first")
    folds = load_folds(run / "folds.json")
    behaviors = tuple(cfg.data.behaviors)
    wanted = {f.index for f in folds}
    order = {f"{b}/{m}": i for i, (b, m) in enumerate(
        (b, m) for b in cfg.extract.backbones for m in cfg.train.models)}
    found = find_models(run)
    models: dict[str, list[FoldResult]] = {}
    incomplete: dict[str, int] = {}
    for name in sorted(found, key=lambda n: (order.get(n, len(order)), n)):
        extra = sorted(set(found[name]) - wanted)
        if extra:
            log.warning("%s: fold folder(s) %s are not in folds.json; ignored", name, extra)
        done = sorted(set(found[name]) & wanted)
        if len(done) < len(folds):
            incomplete[name] = len(done)
            log.warning("%s: only %d of %d folds finished; left out of the report "
                        "(`mouse-pipeline train` resumes it)", name, len(done), len(folds))
            continue
        models[name] = [_load_fold(run / name / f"fold_{f.index}", f, behaviors) for f in folds]
    if not models:
        raise RunError(f"{run}: no model has out-of-fold probabilities for all {len(folds)} folds; "
                       "run `mouse-pipeline train` first (it resumes unfinished folds)")
    lengths: dict[str, int] = {}
    for name, results in models.items():
        for fr in results:
            for vid, p in {**fr.val, **fr.test}.items():
                if lengths.setdefault(vid, len(p)) != len(p):
                    raise RunError(f"{run / name}: {len(p)} frames of probabilities for {vid!r}, "
                                   f"but {lengths[vid]} in another model; retrain with one cache")
    backbones = list(dict.fromkeys(n.split("/")[0] for n in models))
    fps = {vid: _video_fps(cfg, backbones, vid) for vid in lengths}
    labels = {vid: _video_labels(cfg, vid, n, fps[vid]) for vid, n in lengths.items()}
    return RunData(run, cfg, folds, behaviors, models, incomplete, labels, fps)


def _json_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise RunError(f"{path}: not valid JSON ({err}); delete the fold folder and train again") from None


def _load_fold(folder: Path, fold: Fold, behaviors: tuple[str, ...]) -> FoldResult:
    """Probabilities and records of one finished fold folder."""
    path = folder / "probs.h5"
    if not path.is_file():
        raise RunError(f"{path}: missing, so this fold has no out-of-fold probabilities; delete "
                       f"{folder.name} and run `mouse-pipeline train` first")
    meta = _json_file(folder / "fold.json")
    if meta and sorted(meta.get("test", [])) != sorted(fold.test):
        raise RunError(f"{folder}: trained with test videos {meta.get('test')} but folds.json "
                       f"says {list(fold.test)}; the run folder mixes two runs")
    out: dict[str, dict[str, np.ndarray]] = {"test": {}, "val": {}}
    with h5py.File(path, "r") as f:
        stored = json.loads(f.attrs.get("behaviors", "null")) if "behaviors" in f.attrs else None
        if stored is not None and tuple(stored) != behaviors:
            raise RunError(f"{path}: probabilities of {stored}, but the run's config lists "
                           f"{list(behaviors)}")
        for split, videos in (("test", fold.test), ("val", fold.val)):
            for vid in videos:
                key = f"{split}/{vid}"
                if key not in f:
                    if split == "val":
                        continue  # only the ensemble needs validation probabilities
                    raise RunError(f"{path}: no probabilities for test video {vid!r}; delete "
                                   f"{folder.name} and run `mouse-pipeline train` first")
                p = np.asarray(f[key][()], dtype=np.float64)
                if p.ndim != 2 or p.shape[1] != len(behaviors) or not np.isfinite(p).all():
                    raise RunError(f"{path}: {key} must be finite probabilities of shape "
                                   f"(frames, {len(behaviors)}), got shape {p.shape}")
                out[split][vid] = p
    post = _json_file(folder / "postprocess.json")
    for b in behaviors:
        if not {"threshold", "max_gap", "min_len"} <= set(post.get(b, {})):
            raise RunError(f"{folder / 'postprocess.json'}: no threshold, max_gap and min_len for "
                           f"{b!r}; delete {folder.name} and run `mouse-pipeline train` first")
    return FoldResult(fold, out["test"], out["val"], {b: post[b] for b in behaviors},
                      _json_file(folder / "history.json"), _json_file(folder / "timings.json"), meta)


def _video_fps(cfg: Config, backbones: Sequence[str], vid: str) -> float:
    """``data.fps``, else the cache's record, else 30 (with a warning)."""
    if cfg.data.fps:
        return float(cfg.data.fps)
    for b in backbones:
        path = cache_path(cfg.extract.cache, b, vid)
        if not path.is_file():
            continue
        try:
            fps = read_attrs(path).get("fps")
        except CacheError as err:
            log.warning("%s", err)
            continue
        if fps and float(fps) > 0:
            return float(fps)
    log.warning("%s: frame rate unknown (data.fps unset, no fps in the cache); assuming 30 "
                "frames/s for bout durations and time axes", vid)
    return 30.0


def _video_labels(cfg: Config, vid: str, n_frames: int, fps: float) -> Labels:
    if cfg.data.labels is None:
        raise RunError(f"{cfg.source}: data.labels is not set, so the report has nothing to score "
                       "against; set it to the labels folder the run was trained with")
    path = label_file(cfg, vid)
    if path is None:
        raise RunError(f"{cfg.data.labels}: no label file for video {vid!r} (expected {vid}.csv); "
                       "the report scores against the labels the run was trained with")
    labels = read_labels(path, cfg.data.label_format, cfg.data.behaviors,
                         columns=dict(cfg.data.label_columns) or None, fps=fps, n_frames=n_frames)
    return check_length(labels, n_frames, cfg.data.max_frame_mismatch, vid)


# --------------------------------------------------------------------------- ensemble


def add_ensemble(data: RunData) -> None:
    """Add the ``ensemble`` model when two or more models are complete.

    Per fold, test and validation probabilities are the mean over the complete models;
    threshold, ``max_gap`` and ``min_len`` of each behaviour are chosen on the fold's
    validation videos with :func:`~mouse_pipeline.postprocess.choose_postprocess` and the
    config's ``postprocess`` grids. Test probabilities play no part in any choice.
    """
    names = [n for n in data.models if n != ENSEMBLE]
    if len(names) < 2:
        data.ensemble_note = "not built: it needs at least two complete models"
        return
    grids = (list(data.cfg.postprocess.max_gap), list(data.cfg.postprocess.min_len))
    results = []
    for i, fold in enumerate(data.folds):
        parts = [data.models[n][i] for n in names]
        if not fold.val or any(v not in p.val for p in parts for v in fold.val):
            data.ensemble_note = f"not built: fold {fold.index} has no validation probabilities"
            log.warning("ensemble %s", data.ensemble_note)
            return
        test = {v: np.mean([p.test[v] for p in parts], axis=0) for v in fold.test}
        val = {v: np.mean([p.val[v] for p in parts], axis=0) for v in fold.val}
        post = {}
        for j, b in enumerate(data.behaviors):
            params = choose_postprocess([data.labels[v].matrix[:, j] for v in fold.val],
                                        [val[v][:, j] for v in fold.val], *grids)
            post[b] = {"threshold": float(params.threshold), "max_gap": int(params.max_gap),
                       "min_len": int(params.min_len)}
        windows = {(p.meta.get("window"), p.meta.get("inference_stride")) for p in parts}
        meta = dict(zip(("window", "inference_stride"), windows.pop(), strict=True)) if len(windows) == 1 else {}
        results.append(FoldResult(fold, test, val, post, meta=meta))
    data.models[ENSEMBLE] = results
    data.ensemble_members = names
    data.ensemble_note = "mean of the probabilities of " + ", ".join(names)


# --------------------------------------------------------------------------- metrics


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
                    rows.append({"model": name, "behavior": b, "fold": fr.fold.index, "stage": stage,
                                 **score, **{k: fr.post[b][k] for k in POST_KEYS if stage == "post" or k == "threshold"}})
                fold_rows += rows
                score = score_videos([y for y, _, _ in all_vids], binaries, pooled_rank,
                                     [f for _, _, f in all_vids])
                pooled.append({"model": name, "behavior": b, "fold": "pooled", "stage": stage, **score})
                summary = summarize_folds([{k: r[k] for k in FRAME_KEYS + BOUT_KEYS} for r in rows])
                for stat in ("mean", "std"):
                    mean_std.append({"model": name, "behavior": b, "fold": stat, "stage": stage,
                                     **{k: summary[k][stat] for k in FRAME_KEYS + BOUT_KEYS}})
    return {"folds": fold_rows, "pooled": pooled, "mean_std": mean_std}


def _ranking(vids: list[tuple[np.ndarray, np.ndarray, float]]) -> dict[str, float]:
    m = binary_metrics(np.concatenate([y for y, _, _ in vids]), np.concatenate([p for _, p, _ in vids]), 0.5)
    return {"pr_auc": m["pr_auc"], "roc_auc": m["roc_auc"]}


# --------------------------------------------------------------------------- cost


def cost_rows(data: RunData) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per backbone: extraction speed and weights; per model: training, inference, jump ratio."""
    nan = float("nan")
    backbones = []
    for b in dict.fromkeys(n.split("/")[0] for n in data.models if n != ENSEMBLE):
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
        grids = {(fr.meta.get("window"), fr.meta.get("inference_stride")) for fr in results}
        jumps = {"ratio": nan, "chance_low": nan, "chance_high": nan}
        if len(grids) == 1 and all(grids.pop()):  # one window grid for every fold
            length, stride = int(results[0].meta["window"]), int(results[0].meta["inference_stride"])
            jumps = boundary_jump_summary([(p, window_starts(len(p), length, stride))
                                           for fr in results for p in fr.test.values()], length, stride)
        models.append({"model": name,
                       "train_minutes": sum(float(s) for s in fit) / 60 if fit and all(s is not None for s in fit) else nan,
                       "inference_frames_per_s": inference,
                       "boundary_jump_ratio": jumps["ratio"],
                       "boundary_jump_chance_low": jumps["chance_low"],
                       "boundary_jump_chance_high": jumps["chance_high"]})
    return backbones, models


# --------------------------------------------------------------------------- figures


def _pooled_test(data: RunData, name: str, j: int) -> tuple[np.ndarray, np.ndarray]:
    y, p = [], []
    for fr in data.models[name]:
        for v in fr.fold.test:
            y.append(data.labels[v].matrix[:, j])
            p.append(fr.test[v][:, j])
    return np.concatenate(y), np.concatenate(p)


def _model_style(data: RunData, name: str) -> dict[str, Any]:
    if name == ENSEMBLE:
        return {"color": "black", "ls": "--", "lw": 1.8}
    i = list(data.models).index(name)
    return {"color": plt.get_cmap("tab10")(i % 10), "ls": "-", "lw": 1.5}


def fig_pr_curves(data: RunData, pooled: list[dict[str, Any]]) -> plt.Figure:
    """Precision-recall curves on pooled test frames: a panel per behaviour, a line per model."""
    k = len(data.behaviors)
    fig, axes = plt.subplots(1, k, figsize=(4.3 * k, 4.2), squeeze=False)
    row = {(r["model"], r["behavior"]): r for r in pooled if r["stage"] == "raw"}
    for j, b in enumerate(data.behaviors):
        ax = axes[0, j]
        for name in data.models:
            y, p = _pooled_test(data, name, j)
            precision, recall = pr_curve(y, p)
            if len(precision):
                ax.step(recall, precision, where="post", label=f"{name} (AP {row[(name, b)]['pr_auc']:.3f})",
                        **_model_style(data, name))
        prevalence = row[(next(iter(data.models)), b)]["prevalence"]
        if math.isfinite(prevalence):
            ax.axhline(prevalence, color="grey", lw=1, ls=":", label=f"chance = prevalence ({prevalence:.3f})")
        ax.set(title=b, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def fig_confusion(data: RunData, pooled: list[dict[str, Any]]) -> plt.Figure:
    """Pooled post-processed confusion matrices: a row of panels per model, a column per behaviour."""
    names, k = list(data.models), len(data.behaviors)
    row = {(r["model"], r["behavior"]): r for r in pooled if r["stage"] == "post"}
    fig, axes = plt.subplots(len(names), k, figsize=(2.9 * k + 1.4, 2.5 * len(names) + 0.4), squeeze=False)
    for i, name in enumerate(names):
        for j, b in enumerate(data.behaviors):
            r = row[(name, b)]
            m = np.array([[r["tn"], r["fp"]], [r["fn"], r["tp"]]], dtype=float)
            totals = m.sum(axis=1, keepdims=True)
            pct = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
            ax = axes[i, j]
            ax.imshow(pct, cmap="Blues", vmin=0, vmax=1)
            for (a, c), v in np.ndenumerate(m):
                ax.text(c, a, f"{int(v):,}\n{100 * pct[a, c]:.1f}%", ha="center", va="center",
                        color="white" if pct[a, c] > 0.6 else "black", fontsize=8)
            ax.set_xticks([0, 1], ["predicted\nabsent", "predicted\npresent"], fontsize=7)
            ax.set_yticks([0, 1], ["absent", "present"], fontsize=7)
            if i == 0:
                ax.set_title(b, fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{name}\nannotated", fontsize=8)
    fig.tight_layout()
    return fig


def fig_ethogram(data: RunData, vid: str) -> plt.Figure:
    """Annotated bouts above each model's post-processed bouts, for one test video."""
    tracks = []
    for j, b in enumerate(data.behaviors):
        tracks.append((f"{b}: annotated", (data.labels[vid].matrix[:, j] == 1).astype(np.int8), j))
        for name, results in data.models.items():
            fr = next(r for r in results if vid in r.fold.test)
            tracks.append((f"{name}", predicted(fr.test[vid][:, j], fr.post[b], "post"), j))
    return ethogram_figure(tracks, data.fps[vid], f"test video {vid}: annotated bouts, then each "
                           "model's post-processed predictions")


def fig_training(data: RunData, name: str) -> plt.Figure:
    """Training loss and validation PR-AUC per epoch, a line per fold (and head)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.4))
    cmap = plt.get_cmap("tab10" if len(data.folds) <= 10 else "tab20")
    styles = ["-", "--", ":", "-."]
    for fr in data.models[name]:
        colour = cmap(fr.fold.index % cmap.N)
        for h, head in enumerate(fr.history.get("heads", [])):
            loss = np.asarray(head.get("loss", []), dtype=float)
            val = np.asarray(head.get("val_pr_auc", []), dtype=float)
            outputs = head.get("outputs", [])
            label = f"fold {fr.fold.index}" + (f" ({outputs[0]})" if len(outputs) == 1 else "")
            ls = styles[h % len(styles)]
            a1.plot(np.arange(1, len(loss) + 1), loss, color=colour, ls=ls, lw=1.2, label=label)
            a2.plot(np.arange(1, len(val) + 1), np.where(np.isfinite(val), val, np.nan), color=colour,
                    ls=ls, lw=1.2)
            best = head.get("best_epoch")
            if best and 0 < best <= len(val) and np.isfinite(val[best - 1]):
                a2.plot([best], [val[best - 1]], "o", color=colour, ms=5)
    a1.set(title=f"{name}: training loss", xlabel="epoch", ylabel="loss (masked, weighted BCE)")
    a2.set(title="validation PR-AUC (dot: epoch kept)", xlabel="epoch", ylabel="mean PR-AUC", ylim=(0, 1.02))
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(a1.lines) <= 16:
        a1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- documents


@dataclass(frozen=True)
class Cell:
    """A table cell given as HTML (already escaped) and as Markdown, with an optional CSS class."""

    html: str
    md: str
    cls: str = ""


@dataclass(frozen=True)
class Group:
    """A table row that titles the rows below it."""

    title: str


class Document:
    """The report built twice at once: as HTML and as Markdown."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.md: list[str] = []
        self.figures: list[tuple[str, bytes]] = []

    def heading(self, level: int, text: str, anchor: str = "") -> None:
        ident = f' id="{html.escape(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {_md_text(text)}\n")

    def para(self, text: str, cls: str = "", md_text: str | None = None) -> None:
        """A paragraph of plain text (escaped); ``md_text`` replaces it in Markdown."""
        body = html.escape(text)
        self.html.append(f'<p class="{cls}">{body}</p>' if cls else f"<p>{body}</p>")
        md = md_text if md_text is not None else _md_text(text)
        self.md.append(f"\n> {md}\n" if cls == "note" else f"\n{md}\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any] | Group], caption: str = "",
              digits: int = 3) -> None:
        """A table; plain values are formatted (``digits`` decimals, NaN as "–") and escaped."""
        body, md_rows = [], []
        text_columns = {0}
        for row in rows:
            if isinstance(row, Group):
                body.append(f'<tr class="group"><td colspan="{len(header)}">{html.escape(row.title)}</td></tr>')
                md_rows.append(f"| *{_md_cell(_md_text(row.title))}* |" + " |" * (len(header) - 1))
                continue
            cells = [c if isinstance(c, Cell) else
                     Cell(html.escape(_fmt(c, digits)), _md_text(_fmt(c, digits)), "text" if isinstance(c, str) else "")
                     for c in row]
            text_columns |= {i for i, c in enumerate(cells) if c.cls}
            body.append("<tr>" + "".join(f'<td class="{c.cls}">{c.html}</td>' if c.cls else f"<td>{c.html}</td>"
                                         for c in cells) + "</tr>")
            md_rows.append("| " + " | ".join(_md_cell(c.md) for c in cells) + " |")
        h = ["<table><thead><tr>",
             *(f'<th class="text">{html.escape(str(c))}</th>' if i in text_columns else f"<th>{html.escape(str(c))}</th>"
               for i, c in enumerate(header)),
             "</tr></thead><tbody>", *body, "</tbody></table>"]
        md = ["| " + " | ".join(_md_cell(_md_text(str(c))) for c in header) + " |",
              "|" + "|".join(":---" if i in text_columns else "---:" for i in range(len(header))) + "|", *md_rows]
        self.html.append("".join(h))
        self.md.append("\n" + "\n".join(md) + "\n")
        if caption:
            self.para(caption, cls="caption", md_text=f"*{_md_text(caption)}*")

    def figure(self, png: bytes, file_name: str, caption: str) -> None:
        """An embedded PNG (data URI) with its caption; also written to ``figures/`` for Markdown."""
        data = base64.b64encode(png).decode("ascii")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.md.append(f"\n![{_md_text(caption)}](figures/{quote(file_name)})\n\n*{_md_text(caption)}*\n")
        self.figures.append((file_name, png))

    def render_html(self, title: str) -> str:
        return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>"
                f"{html.escape(title)}</title><style>{CSS}</style></head><body><main>\n"
                + "\n".join(self.html) + "\n</main></body></html>\n")

    def render_md(self) -> str:
        return "\n".join(self.md).lstrip() + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;background:#fff;
line-height:1.45;margin:0}main{max-width:1180px;margin:0 auto;padding:1.5em 1.5em 4em}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;border-bottom:2px solid #e3e3e3;
padding-bottom:.2em;margin-top:2.2em}h3{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;margin:.5em 0 .3em;font-size:.86em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d4d4d4;padding:.28em .6em;text-align:right;vertical-align:top}
th{background:#f2f4f7;font-weight:600}td:first-child,th:first-child,td.text,th.text,td.names{text-align:left}
tr.group td{background:#fafafa;font-weight:600;text-align:left;color:#555}
td.names{text-align:left;max-width:38em}.sd{display:block;color:#777;font-size:.85em}
.best{font-weight:700}figure{margin:1em 0 1.6em}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.caption{color:#555;font-size:.88em;margin:.3em 0 1.2em;max-width:60em}
.note{background:#fff8e1;padding:.6em .9em;border-left:4px solid #f0b400;max-width:60em}
.meta{color:#666;margin-top:0}dl.summary{display:grid;grid-template-columns:max-content 1fr;
gap:.25em 1em;margin:1em 0}dl.summary dt{font-weight:600}dl.summary dd{margin:0}
nav ol{columns:2;font-size:.92em}code{background:#f4f4f4;padding:0 .25em;border-radius:3px}
""".strip()


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):,.{digits}f}" if math.isfinite(v) else "–"
    return str(v)


def _md_text(text: str) -> str:
    """Text safe in Markdown that renderers turn into HTML: no raw tags."""
    return html.escape(str(text), quote=False)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


# --------------------------------------------------------------------------- sections


NAN_NOTE = ("“–”: undefined, e.g. recall and PR-AUC without a positive test frame, precision "
            "when no frame was predicted present, a standard deviation from fewer than two folds.")


def _value_cell(value: float, mean: float | None = None, std: float | None = None, best: bool = False) -> Cell:
    main = _fmt(value)
    h = f'<span class="best">{html.escape(main)}</span>' if best else html.escape(main)
    md = f"**{main}**" if best and main != "–" else main
    if mean is not None:
        sd = f"{_fmt(mean)} ± {_fmt(std)}"
        h += f'<span class="sd">{html.escape(sd)}</span>'
        md += f" ({sd})"
    return Cell(h, md)


def _section_header(doc: Document, data: RunData, metrics: dict[str, Any]) -> None:
    cfg = data.cfg
    test_videos = [v for f in data.folds for v in f.test]
    folds = cfg.train.folds
    scheme = folds.scheme + (f", k = {folds.k}" if folds.scheme == "group_kfold" else "")
    scheme += f", {folds.n_val} validation video(s) per fold"
    complete = [n for n in data.models if n != ENSEMBLE]
    items = [("Videos", f"{len(data.labels)}: " + ", ".join(sorted(data.labels))),
             ("Folds", f"{len(data.folds)} ({scheme}); {len(test_videos)} test videos in all"),
             ("Backbones", ", ".join(dict.fromkeys(n.split('/')[0] for n in complete))),
             ("Models", ", ".join(complete)),
             ("Ensemble", data.ensemble_note),
             ("Behaviours", ", ".join(data.behaviors))]
    if data.incomplete:
        items.append(("Incomplete", ", ".join(f"{n} ({k} of {len(data.folds)} folds)"
                                               for n, k in data.incomplete.items())))
    doc.html.append('<dl class="summary">' + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items) + "</dl>")
    doc.md.append("\n" + "\n".join(f"- **{k}:** {_md_text(v)}" for k, v in items) + "\n")
    doc.para("Where the numbers come from: every figure and table is computed on out-of-fold test "
             "videos only, each predicted by the model of the fold that held it out, with frames "
             "not annotated left out. Early stopping, thresholds and post-processing were chosen "
             "on validation videos taken from the training side of each fold; a test video never "
             "influenced any choice. \"Pooled\" means all test frames of all folds together, each "
             "fold's frames judged with that fold's own threshold.", cls="note")
    if data.incomplete:
        doc.para("Left out of this report because not all their folds finished: "
                 + ", ".join(f"{n} ({k} of {len(data.folds)} folds)" for n, k in data.incomplete.items())
                 + ". Run `mouse-pipeline train` again with the same config: it resumes them.", cls="note")
    first = next(iter(data.models))
    rows = []
    for b in data.behaviors:
        r = next(r for r in metrics["pooled"] if r["model"] == first and r["behavior"] == b and r["stage"] == "raw")
        seconds = sum(int((data.labels[v].matrix[:, data.behaviors.index(b)] == 1).sum()) / data.fps[v]
                      for v in test_videos)
        rows.append([b, r["n_frames"], r["n_positive"], r["prevalence"], r["n_true_bouts"],
                     seconds / r["n_true_bouts"] if r["n_true_bouts"] else float("nan")])
    doc.table(["behaviour", "annotated test frames", "positive frames", "prevalence",
               "annotated bouts", "mean bout (s)"], rows,
              "Prevalence of each behaviour among the annotated frames of the test videos: the "
              "precision a random guess would reach, the baseline for PR-AUC.")


def _section_results(doc: Document, data: RunData, metrics: dict[str, Any]) -> None:
    names = list(data.models)
    pooled = {(r["model"], r["behavior"], r["stage"]): r for r in metrics["pooled"]}
    ms = {(r["model"], r["behavior"], r["stage"], r["fold"]): r for r in metrics["mean_std"]}
    doc.heading(3, "PR-AUC at a glance")
    rows = []
    for n in names:
        vals = [pooled[(n, b, "raw")]["pr_auc"] for b in data.behaviors]
        finite = [v for v in vals if math.isfinite(v)]
        rows.append([n, *vals, float(np.mean(finite)) if finite else float("nan")])
    doc.table(["model", *data.behaviors, "mean"], rows,
              "Pooled PR-AUC (average precision) on all test frames: 1 is perfect, the prevalence "
              "above is chance.")
    groups = (("raw: threshold chosen on validation videos",
               (("binary accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
                ("PR-AUC", "pr_auc"), ("F1", "f1"), ("bout F1", "bout_f1")), "raw"),
              ("post-processed: threshold + gap closing + minimum bout length (chosen on validation)",
               (("binary accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
                ("F1", "f1"), ("bout F1", "bout_f1"), ("bout count error", "bout_count_error"),
                ("duration error (s)", "bout_duration_error_s")), "post"))
    for b in data.behaviors:
        doc.heading(3, b)
        rows = []
        for title, metrics_, stage in groups:
            rows.append(Group(title))
            for label, key in metrics_:
                values = [pooled[(n, b, stage)][key] for n in names]
                finite = [v for v in values if math.isfinite(v)]
                signed = key in ("bout_count_error", "bout_duration_error_s")  # best: closest to 0
                top = (min(abs(v) for v in finite) if signed else max(finite)) if len(finite) > 1 else None
                rows.append([label, *[_value_cell(v, ms[(n, b, stage, "mean")][key], ms[(n, b, stage, "std")][key],
                                                  best=top is not None and (abs(v) if signed else v) == top)
                                      for n, v in zip(names, values, strict=True)]])
        doc.table(["metric", *names], rows)
    doc.para(f"Each cell: the pooled value (all test frames of the {len(data.folds)} folds together; "
             "bold: the best model) and below it the mean ± standard deviation over folds. Bout F1: "
             "a predicted bout matches an annotated one when their intersection over union is at "
             "least 0.5. Count and duration errors are predicted minus annotated, summed over test "
             "videos. " + NAN_NOTE, cls="caption")


def _section_thesis(doc: Document, data: RunData, metrics: dict[str, Any]) -> None:
    if not THESIS_FIGURES:
        doc.para("The thesis's published test figures are not included in this version of "
                 "mouse-pipeline, so there is nothing to set beside ours here (none are invented).",
                 cls="note")
        return
    pooled = {(r["model"], r["behavior"]): r for r in metrics["pooled"] if r["stage"] == "raw"}
    keys = (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"), ("PR-AUC", "pr_auc"))
    rows = []
    for thesis_model, per in THESIS_FIGURES.items():
        ours_name = THESIS_MODEL_NAMES.get(thesis_model, "")
        for b, values in per.items():
            ours = pooled.get((ours_name, b))
            cells: list[Any] = [thesis_model, ours_name if ours else "not in this run", b]
            for _, k in keys:
                cells += [values.get(k, float("nan")), ours[k] if ours else None]
            rows.append(cells)
    header = ["thesis model", "our model", "behaviour"]
    for label, _ in keys:
        header += [f"{label} thesis", f"{label} ours"]
    doc.para(f"Thesis figures: {THESIS_LABEL}. They come from the final evaluation cells of the "
             "thesis code's notebooks: 5 test videos (33,000 frames) that also served for early "
             "stopping (so optimistic), threshold 0.5, PR-AUC as Keras's interpolated AUC. Ours: "
             "pooled out-of-fold test frames of this run, validation threshold. Set them side by "
             "side for orientation, not number for number.", cls="note")
    doc.table(header, rows, f"Thesis columns: {THESIS_LABEL}. “–” in our columns: that model or "
              "behaviour is not part of this run.")


def _num(value: float, digits: int, missing: str = "not recorded") -> Cell:
    text = _fmt(value, digits) if math.isfinite(value) else missing
    return Cell(html.escape(text), text)


def _section_cost(doc: Document, data: RunData, cost: tuple[list[dict], list[dict]]) -> None:
    backbones, models = cost
    rows = [[r["backbone"], r["weights"] or "not recorded", _num(r["extract_frames_per_s"], 1),
             Cell(f"{r['videos_recorded']} of {r['videos']}", f"{r['videos_recorded']} of {r['videos']}")]
            for r in backbones]
    doc.table(["backbone", "weights", "extraction frames/s", "videos with a record"], rows,
              "Stage 1: frames per second of the frozen CNN over this run's videos, as recorded in "
              "the cache (mean over videos); \"not recorded\" where the cache holds no timing.")
    def chance(r: dict) -> Cell:
        lo, hi = r["boundary_jump_chance_low"], r["boundary_jump_chance_high"]
        text = f"{lo:.2f}-{hi:.2f}" if math.isfinite(lo) and math.isfinite(hi) else "not computed"
        return Cell(text, text)

    rows = [[r["model"], _num(r["train_minutes"], 2), _num(r["inference_frames_per_s"], 1),
             _num(r["boundary_jump_ratio"], 2, "not computed"), chance(r)] for r in models]
    doc.table(["model", "training minutes (all folds)", "inference frames/s", "boundary jump ratio",
               "same, edges moved off the grid (chance)"], rows,
              "Stage 2: total fit time over all folds (every hyperparameter trial), and sequence-model "
              "inference speed on test videos (the ensemble: its members' total time, and their "
              "inference one after the other). "
              "Boundary jump ratio: the mean frame-to-frame change of the predicted probabilities "
              "where a prediction window starts or ends, divided by the mean change elsewhere, pooled "
              "over the test videos. About 1 means predictions do not depend on where windows happen "
              "to start; the thesis code's predictions show about 19 (a jump at every window edge). "
              "The last column is the same ratio with every edge moved 1 to stride-1 frames, where "
              "no window starts: the spread that chance alone gives. A ratio near that spread, "
              "not far above it, shows no edge effect.")


def _section_folds(doc: Document, data: RunData) -> None:
    rows = []
    for f in data.folds:
        n = sum(int(data.labels[v].n_frames) for v in f.test)
        rows.append([f.index, *(Cell(html.escape(", ".join(vs)), _md_text(", ".join(vs)), "names")
                                for vs in (f.train, f.val, f.test)), n])
    doc.table(["fold", "training videos", "validation videos (early stopping, thresholds)",
               "test videos (scored)", "test frames"], rows,
              "Splits by whole video (folds.json): a video is never on two sides of a fold.")


SECTIONS = (("results", "Results per behaviour (thesis layout)"),
            ("thesis", "The thesis's published test figures beside ours"),
            ("pr", "Precision-recall curves"), ("confusion", "Confusion matrices"),
            ("ethograms", "Ethograms of test videos"), ("training", "Training curves"),
            ("cost", "Computational cost"), ("folds", "Folds"))


def build_document(data: RunData, metrics: dict[str, Any], cost: tuple[list[dict], list[dict]]) -> Document:
    """The whole report (text, tables and figures) for a run whose metrics are computed."""
    doc = Document()
    doc.heading(1, f"Behaviour recognition report: {data.run.name}")
    doc.para(f"Written {_dt.datetime.now():%Y-%m-%d %H:%M} by mouse-pipeline {__version__} from the "
             f"run folder {data.run}.", cls="meta")
    _section_header(doc, data, metrics)
    doc.html.append("<nav><ol>" + "".join(f'<li><a href="#{k}">{html.escape(t)}</a></li>'
                                          for k, t in SECTIONS) + "</ol></nav>")
    titles = dict(SECTIONS)
    pooled = metrics["pooled"]

    doc.heading(2, titles["results"], "results")
    _section_results(doc, data, metrics)

    doc.heading(2, titles["thesis"], "thesis")
    _section_thesis(doc, data, metrics)

    doc.heading(2, titles["pr"], "pr")
    doc.figure(png_bytes(fig_pr_curves(data, pooled)), "pr_curves.png",
               "Precision-recall curves on all out-of-fold test frames, one panel per behaviour, every "
               "model overlaid (the ensemble dashed). AP in the legend is the average precision, the "
               "PR-AUC of the tables. The dotted line is chance: a random guess has precision equal "
               "to the prevalence. Curves further up and right are better.")

    doc.heading(2, titles["confusion"], "confusion")
    doc.figure(png_bytes(fig_confusion(data, pooled)), "confusion.png",
               "Confusion matrices on all test frames after post-processing, a row of panels per "
               "model and a column per behaviour. Rows: the annotation; columns: the prediction. "
               "Each cell: number of frames and percentage of its row (so the bottom-right cell is "
               "the recall, the top-right the share of absent frames wrongly called present).")

    doc.heading(2, titles["ethograms"], "ethograms")
    test_videos = [v for f in data.folds for v in f.test]
    if len(test_videos) > MAX_ETHOGRAMS:
        doc.para(f"The first {MAX_ETHOGRAMS} of {len(test_videos)} test videos are shown.")
    for vid in test_videos[:MAX_ETHOGRAMS]:
        doc.figure(png_bytes(fig_ethogram(data, vid)), f"ethogram_{sanitize_id(vid)}.png",
                   f"Ethogram of test video {vid} (held out by its fold): for each behaviour, the "
                   "annotated bouts on the first row, then the post-processed bouts each model "
                   "predicted; time in seconds. Frames not annotated are drawn as absent.")

    doc.heading(2, titles["training"], "training")
    for name in data.models:
        if name == ENSEMBLE:
            continue
        doc.figure(png_bytes(fig_training(data, name)), f"training_{sanitize_id(name.replace('/', '_'))}.png",
                   f"Training of {name}, a line per fold: loss on the training windows (left) and mean "
                   "PR-AUC over behaviours on the fold's validation videos after each epoch (right). "
                   "The dot marks the epoch kept: early stopping watches validation videos, never test "
                   "videos.")
    if ENSEMBLE in data.models:
        doc.para("The ensemble is not trained: it averages the probabilities of its members.")

    doc.heading(2, titles["cost"], "cost")
    _section_cost(doc, data, cost)

    doc.heading(2, titles["folds"], "folds")
    _section_folds(doc, data)
    return doc


# --------------------------------------------------------------------------- entry point


def write_report(run_dir: str | Path) -> Path:
    """Score a trained run on its out-of-fold test videos and write its report files.

    Parameters
    ----------
    run_dir
        A run folder written by ``mouse-pipeline train``.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``; ``report.md``, ``figures/``, ``metrics.csv`` and
        ``metrics.json`` are written beside it (see the module docstring).

    Raises
    ------
    RunError
        The folder is not a trained run (no ``folds.json``, no complete model, missing
        probabilities) or a label file the run was trained with is gone.
    """
    data = load_run(run_dir)
    add_ensemble(data)
    metrics = compute_metrics(data)
    cost = cost_rows(data)
    run = data.run
    rows = metrics["folds"] + metrics["pooled"] + metrics["mean_std"]
    write_rows_csv(run / "metrics.csv", [{k: r.get(k, "") for k in CSV_COLUMNS} for r in rows], list(CSV_COLUMNS))
    ensemble = None
    if ENSEMBLE in data.models:
        ensemble = {"members": data.ensemble_members,
                    "postprocess": [{"fold": fr.fold.index, "behavior": b, **fr.post[b]}
                                    for fr in data.models[ENSEMBLE] for b in data.behaviors]}
    payload = {"version": 1, "run": run.name, "models": list(data.models), "behaviors": list(data.behaviors),
               "incomplete_models": data.incomplete, "ensemble": ensemble, **metrics,
               "cost": {"backbones": cost[0], "models": cost[1]}}
    _write_bytes(run / "metrics.json", json.dumps(_json_safe(payload), indent=1, allow_nan=False).encode())
    with plt.rc_context({"text.parse_math": False}):  # names with "$" stay text
        doc = build_document(data, metrics, cost)
    figures = run / "figures"
    figures.mkdir(exist_ok=True)
    for name, png in doc.figures:
        _write_bytes(figures / name, png)
    _write_bytes(run / "report.md", doc.render_md().encode("utf-8"))
    _write_bytes(run / "report.html", doc.render_html(f"mouse-pipeline report: {run.name}").encode("utf-8"))
    log.info("report of %d model(s) on %d test videos: %s", len(data.models),
             sum(len(f.test) for f in data.folds), run / "report.html")
    return run / "report.html"


def _write_bytes(path: Path, payload: bytes) -> None:
    """Write beside the final name, then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
