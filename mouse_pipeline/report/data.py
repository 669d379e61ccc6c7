"""A run folder read back: every fold's probabilities, labels, settings and timings;
the ensemble of a run's complete models."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..annotations import Labels, check_length, read_labels
from ..config import Config
from ..dataset import label_file
from ..errors import CacheError, RunError
from ..features.store import cache_path, read_attrs
from ..folds import Fold, load_folds
from ..postprocess import choose_postprocess
from ..predict import load_run_config

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
_FOLD_DIR = re.compile(r"fold_(\d+)")


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


