"""The run folder: what ``train`` writes and ``report`` and ``predict`` read.

This module owns the layout, as :mod:`.features.store` owns the cache's. Every file name
of a run is here; training writes through :class:`FoldWriter`, the report and predict
read through :class:`RunFolder`, and any missing, truncated or malformed file becomes one
:class:`~mouse_pipeline.errors.RunError` that names the file and says what to do.

Layout (schema version :data:`SCHEMA_VERSION`, recorded in ``run.json``)::

    run.json                    {"schema": 1, "package_version": ..., "videos": {id: {"video":
                                path, "labels": path, "fps": frames/s}}}: the labelled videos
                                as training found them (report and predict read them back)
    config.yaml                 resolved config of the run
    folds.json                  train / val / test videos of every fold (:mod:`.folds`)
    metrics.json                scores written by ``report`` (predict reads them to choose)
    logs/<command>-<time>.log   what train, report and predict logged, with times
    <backbone>/<model>/fold_<i>/
        model.keras             (or model_<behaviour>.keras with train.heads: per_behavior)
        normalization.npz       mean and std of the training videos (also inside the model)
        postprocess.json        per behaviour: threshold, max_gap, min_len (from validation)
        history.json            per epoch: loss, validation PR-AUC; trials and their scores
        timings.json            fit seconds, best epoch, inference frames/s
        probs.h5                test/<video> and val/<video>: (n_frames, n_behaviours) float32
        fold.json               the fold's videos, window and inference stride; written last
    <backbone>/<model>/final/   the same, trained on all labelled videos (``--final``)

A fold folder is built as ``fold_<i>.partial`` and renamed when complete (``fold.json``
is its last file), so a killed run resumes by redoing only unfinished folds, and a
folder with the final name is always whole.

No TensorFlow here: models are saved by the caller into :meth:`FoldWriter.model_path`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from . import __version__
from .config import Config, config_from_dict, dump_config
from .errors import ConfigError, RunError
from .fileio import atomic_path, first_line, fsync_path, write_json
from .folds import Fold, load_folds, save_folds
from .locks import acquire_lock

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
FOLDS_FILE = "folds.json"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
NORMALIZATION_FILE = "normalization.npz"
POSTPROCESS_FILE = "postprocess.json"
HISTORY_FILE = "history.json"
TIMINGS_FILE = "timings.json"
PROBS_FILE = "probs.h5"
FOLD_FILE = "fold.json"
FINAL = "final"
PARTIAL = ".partial"
LOG_DIR = "logs"
POST_KEYS = ("threshold", "max_gap", "min_len")
_FOLD_DIR = re.compile(r"fold_(\d+)")


def model_file(behavior: str | None) -> str:
    """The model file of a joint head (``None``) or of one behaviour's head."""
    return MODEL_FILE if behavior is None else f"model_{behavior}.keras"


def check_behavior_names(behaviors: tuple[str, ...] | list[str], source: str) -> None:
    """Refuse behaviour names that cannot be part of a file name (per-behaviour model files)."""
    for b in behaviors:
        if not b.strip() or b in (".", "..") or any(c in b for c in '/\\\0') or b != b.strip():
            raise ConfigError(f"{source}: data.behaviors: {b!r} cannot be part of a file name (no '/', "
                              "'\\', leading or trailing spaces, '.' or '..'); rename it (data.label_columns "
                              "maps a label file's column to a behaviour name)")


def unit_name(index: int) -> str:
    """The folder of fold ``index`` (``final`` for the final model, index -1)."""
    return FINAL if index < 0 else f"fold_{index}"


# --------------------------------------------------------------------------- records


@dataclass
class FoldResult:
    """A finished fold folder read back: probabilities and the fold's records."""

    fold: Fold
    test: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    post: dict[str, dict[str, float]]
    history: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FinalModel:
    """The final model of one backbone x sequence-model combination of a run.

    ``heads`` lists ``(outputs, model file)``: one joint model for every behaviour, or
    one model per behaviour.
    """

    backbone: str
    kind: str
    folder: Path
    behaviors: tuple[str, ...]
    thresholds: tuple[float, ...]
    max_gap: tuple[int, ...]
    min_len: tuple[int, ...]
    window: int
    inference_stride: int
    heads: tuple[tuple[tuple[int, ...], Path], ...]
    fold: Fold

    @property
    def name(self) -> str:
        return f"{self.backbone}/{self.kind}"


# --------------------------------------------------------------------------- readers


def _read_json(path: Path, what: str, required: bool = True) -> Any:
    """A JSON file of the run; RunError naming it when missing (if required) or damaged."""
    if not path.is_file():
        if not required:
            return {}
        raise RunError(f"{path}: missing; {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RunError(f"{path}: not valid JSON ({first_line(err)}); {what}") from None


def _retrain(folder: Path) -> str:
    return f"delete {folder} and run `mouse-pipeline train` again (finished folds are kept)"


def read_post(folder: Path, behaviors: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``postprocess.json`` of a fold folder, checked to hold every behaviour."""
    path = folder / POSTPROCESS_FILE
    post = _read_json(path, _retrain(folder))
    for b in behaviors:
        entry = post.get(b) if isinstance(post, dict) else None
        if not isinstance(entry, dict) or not set(POST_KEYS) <= set(entry) or not all(
                isinstance(entry[k], (int, float)) and not isinstance(entry[k], bool) for k in POST_KEYS):
            raise RunError(f"{path}: no numeric threshold, max_gap and min_len for {b!r}; "
                           f"{_retrain(folder)}")
    return {b: {k: post[b][k] for k in POST_KEYS} for b in behaviors}


def read_meta(folder: Path) -> dict[str, Any]:
    """``fold.json`` of a finished fold folder: its videos, window and inference stride."""
    path = folder / FOLD_FILE
    meta = _read_json(path, _retrain(folder))
    ok = isinstance(meta, dict) and all(
        isinstance(meta.get(k), int) and meta[k] >= 1 for k in ("window", "inference_stride"))
    if not ok or not isinstance(meta.get("test", []), list):
        raise RunError(f"{path}: no window and inference_stride (whole numbers >= 1); {_retrain(folder)}")
    return meta


def read_probs(folder: Path, fold: Fold, behaviors: tuple[str, ...]) -> dict[str, dict[str, np.ndarray]]:
    """``probs.h5`` of a fold folder: ``{"test": {video: probs}, "val": {...}}``.

    Every test video must be there; validation videos may be absent (older runs).
    """
    path = folder / PROBS_FILE
    if not path.is_file():
        raise RunError(f"{path}: missing, so this fold has no out-of-fold probabilities; {_retrain(folder)}")
    out: dict[str, dict[str, np.ndarray]] = {"test": {}, "val": {}}
    try:
        with h5py.File(path, "r") as f:
            stored = json.loads(f.attrs["behaviors"]) if "behaviors" in f.attrs else None
            if stored is not None and tuple(stored) != behaviors:
                raise RunError(f"{path}: probabilities of {stored}, but the run's config lists "
                               f"{list(behaviors)}")
            for split, videos in (("test", fold.test), ("val", fold.val)):
                for vid in videos:
                    key = f"{split}/{vid}"
                    if key not in f:
                        if split == "val":
                            continue  # only the ensemble needs validation probabilities
                        raise RunError(f"{path}: no probabilities for test video {vid!r}; {_retrain(folder)}")
                    out[split][vid] = np.asarray(f[key][()], dtype=np.float64)
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise RunError(f"{path}: unreadable ({first_line(err)}); {_retrain(folder)}") from None
    for split, probs in out.items():
        for vid, p in probs.items():
            if p.ndim != 2 or p.shape[1] != len(behaviors) or not np.isfinite(p).all():
                raise RunError(f"{path}: {split}/{vid} must be finite probabilities of shape "
                               f"(frames, {len(behaviors)}), got shape {p.shape}")
    return out


class RunFolder:
    """One run folder (``train.run``): its files, readers and the fold writer.

    Parameters
    ----------
    path
        The run folder (it need not exist yet for a run about to be trained).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def folds_file(self) -> Path:
        return self.path / FOLDS_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    def unit(self, backbone: str, kind: str, index: int) -> Path:
        """The folder of one (backbone, model, fold); ``index`` -1 is the final model."""
        return self.path / backbone / kind / unit_name(index)

    @staticmethod
    def is_complete(folder: Path) -> bool:
        """Whether a fold folder was committed (its last file is there)."""
        return (folder / FOLD_FILE).is_file()

    def lock(self) -> AbstractContextManager[Path]:
        """One writer at a time for this run (a lock file beside the folder)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return acquire_lock(self.path.parent, name=f".{self.path.name}.lock")

    # ----------------------------------------------------------------- config, folds

    def read_config(self) -> Config:
        """The resolved config the run was trained with."""
        path = self.config_file
        if not path.is_file():
            raise RunError(f"{self.path}: not a run folder (no {CONFIG_FILE}); pass the folder "
                           "`mouse-pipeline train` wrote")
        self._check_schema()
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError) as err:  # ValueError: not UTF-8
            raise RunError(f"{path}: not valid YAML ({first_line(err)}); restore it or train the "
                           "run again") from None
        if not isinstance(raw, dict):
            raise RunError(f"{path}: not a mapping of config sections; restore it or train the run again")
        try:
            return config_from_dict(raw, str(path))
        except ConfigError as err:
            raise RunError(f"{path}: not a valid run config ({first_line(err)})") from None

    def _check_schema(self) -> None:
        info = self.read_info()
        schema = info.get("schema", 1)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise RunError(f"{self.path / RUN_FILE}: run folder schema {schema!r}, this version reads "
                           f"schema {SCHEMA_VERSION}; use the mouse-pipeline version that wrote it")

    def read_info(self) -> dict[str, Any]:
        """``run.json`` (empty for runs older than it)."""
        path = self.path / RUN_FILE
        info = _read_json(path, "restore it or train the run again", required=False)
        if not isinstance(info, dict):
            raise RunError(f"{path}: not a JSON object; restore it or train the run again")
        return info

    def write_config(self, cfg: Config) -> None:
        """Record the run's config and schema (a new or resumed run)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / RUN_FILE, {"schema": SCHEMA_VERSION, "package_version": __version__})
        dump_config(cfg, self.config_file)

    def record_videos(self, videos: dict[str, dict[str, Any]]) -> None:
        """Record the labelled videos: ``id -> {"video", "labels", "fps"}``."""
        write_json(self.path / RUN_FILE, {**self.read_info(), "videos": videos})

    def recorded_videos(self) -> dict[str, dict[str, Any]]:
        """What :meth:`record_videos` recorded (empty for older runs)."""
        videos = self.read_info().get("videos", {})
        ok = isinstance(videos, dict) and all(isinstance(v, dict) for v in videos.values())
        if not ok:
            raise RunError(f"{self.path / RUN_FILE}: 'videos' is not a mapping of video records; "
                           "train the run again")
        return videos

    def read_folds(self) -> list[Fold]:
        """The run's folds; RunError when none were written."""
        if not self.folds_file.is_file():
            raise RunError(f"{self.path}: no {FOLDS_FILE}, so nothing was trained here; run "
                           "`mouse-pipeline train` first")
        return load_folds(self.folds_file)

    def write_folds(self, folds: list[Fold]) -> None:
        save_folds(self.folds_file, folds)

    def clear(self) -> None:
        """Delete the run folder's results (``train --overwrite``); its logs are kept."""
        if not self.path.is_dir():
            return
        for child in self.path.iterdir():
            if child.name == LOG_DIR:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def has_committed_units(self) -> bool:
        """Whether any fold or final folder of the run is complete."""
        return self.path.is_dir() and next(self.path.glob(f"*/*/*/{FOLD_FILE}"), None) is not None

    def discard_untrained(self) -> None:
        """Undo a run that trained nothing: its records go, so a corrected rerun starts clean.

        Only the files a run writes are removed (then folders left empty); a run with any
        complete fold is left as it is.
        """
        if self.has_committed_units():
            return
        for name in (CONFIG_FILE, RUN_FILE, FOLDS_FILE):
            (self.path / name).unlink(missing_ok=True)
        for folder in sorted((p for p in self.path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(folder.iterdir()):
                folder.rmdir()
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    # ----------------------------------------------------------------- folds

    def fold_writer(self, backbone: str, kind: str, index: int) -> FoldWriter:
        """A writer that builds one fold folder and commits it atomically."""
        return FoldWriter(self.unit(backbone, kind, index))

    def find_models(self) -> dict[str, list[int]]:
        """The ``backbone/model`` folders of the run and the fold indices finished in each.

        A folder counts when it holds ``fold_<i>`` or ``fold_<i>.partial`` folders;
        ``final`` and ``*.partial`` folders are not finished folds.
        """
        found: dict[str, list[int]] = {}
        for bdir in _subdirs(self.path):
            for mdir in _subdirs(bdir):
                subs = [p.name for p in mdir.iterdir() if p.is_dir()]
                done = sorted(int(m.group(1)) for s in subs if (m := _FOLD_DIR.fullmatch(s)))
                started = any(s.endswith(PARTIAL) and _FOLD_DIR.fullmatch(s[:-len(PARTIAL)]) for s in subs)
                if done or started:
                    found[f"{bdir.name}/{mdir.name}"] = done
        return found

    def read_fold(self, name: str, fold: Fold, behaviors: tuple[str, ...]) -> FoldResult:
        """Probabilities and records of the finished fold ``fold`` of model ``name``."""
        folder = self.path / name / unit_name(fold.index)
        meta = read_meta(folder)
        if sorted(meta.get("test", [])) != sorted(fold.test):
            raise RunError(f"{folder / FOLD_FILE}: trained with test videos {meta.get('test')} but {FOLDS_FILE} "
                           f"says {list(fold.test)}; the run folder mixes two runs")
        probs = read_probs(folder, fold, behaviors)
        return FoldResult(fold, probs["test"], probs["val"], read_post(folder, behaviors),
                          _read_json(folder / HISTORY_FILE, _retrain(folder), required=False),
                          _read_json(folder / TIMINGS_FILE, _retrain(folder), required=False), meta)

    def read_final(self, cfg: Config, backbone: str, kind: str) -> FinalModel:
        """The final model of ``backbone/kind`` with its post-processing and window."""
        folder = self.unit(backbone, kind, -1)
        if folder.is_dir() and not self.is_complete(folder):
            raise RunError(f"{folder / FOLD_FILE}: missing, so this final model is not complete; "
                           f"{_retrain(folder)}")
        if not self.is_complete(folder):
            raise RunError(f"{self.path}: no final model for {backbone}/{kind}; train it with "
                           f"`mouse-pipeline train --config {self.config_file} --run {self.path} --final` "
                           "(finished folds are kept)")
        behaviors = tuple(cfg.data.behaviors)
        post, meta = read_post(folder, behaviors), read_meta(folder)
        if cfg.train.heads == "joint":
            heads = (((*range(len(behaviors)),), folder / model_file(None)),)
        else:
            heads = tuple(((j,), folder / model_file(b)) for j, b in enumerate(behaviors))
        for _, path in heads:
            if not path.is_file():
                raise RunError(f"{path}: model file missing; {_retrain(folder)}")
        try:
            fold = Fold.from_dict({"index": -1, "test": [], **meta})
        except RunError as err:
            raise RunError(f"{folder / FOLD_FILE}: {err}; {_retrain(folder)}") from None
        return FinalModel(backbone, kind, folder, behaviors,
                          *(tuple(post[b][k] for b in behaviors) for k in POST_KEYS),
                          meta["window"], meta["inference_stride"], heads, fold)

    def behavior_scores(self) -> dict[tuple[str, str], float]:
        """Pooled cross-validated PR-AUC per (model, behaviour) from ``metrics.json`` (written
        by ``report``; empty before it)."""
        if not self.metrics_file.is_file():
            return {}
        rows = _read_json(self.metrics_file, "run `mouse-pipeline report` again to rewrite it")
        rows = rows.get("pooled", []) if isinstance(rows, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise RunError(f"{self.metrics_file}: no list of pooled scores; run `mouse-pipeline "
                           "report` again to rewrite it")
        return {(str(r.get("model")), str(r.get("behavior"))): float(r["pr_auc"]) for r in rows
                if r.get("stage") == "raw" and isinstance(r.get("pr_auc"), (int, float))}

    def model_scores(self) -> dict[str, float]:
        """Mean cross-validated PR-AUC over behaviours per model (empty before report)."""
        per_model: dict[str, list[float]] = {}
        for (model, _), score in self.behavior_scores().items():
            per_model.setdefault(model, []).append(score)
        return {m: float(np.nanmean(v)) for m, v in per_model.items()}


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------- writer


class FoldWriter:
    """Build one fold folder under ``<name>.partial``; renamed into place on a clean exit.

    Use as a context manager; on an exception the partial folder is deleted and a
    committed folder of the same name is left as it was.
    """

    def __init__(self, target: Path) -> None:
        self.target = Path(target)
        self.partial = self.target.with_name(self.target.name + PARTIAL)

    def __enter__(self) -> FoldWriter:
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.partial, ignore_errors=True)
            return False
        if self.target.exists():
            shutil.rmtree(self.target)
        self.partial.rename(self.target)
        fsync_path(self.target.parent)
        return False

    def model_path(self, behavior: str | None) -> Path:
        """Where to save the joint model (``None``) or one behaviour's model."""
        return self.partial / model_file(behavior)

    def write_probs(self, behaviors: list[str], splits: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """``probs.h5``: ``{"val": {video: probs}, "test": {...}}``."""
        with atomic_path(self.partial / PROBS_FILE) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["behaviors"] = json.dumps(behaviors)
            for split, probs in splits.items():
                for v, p in probs.items():
                    f.create_dataset(f"{split}/{v}", data=p, compression="gzip")

    def write_normalization(self, mean: np.ndarray, std: np.ndarray) -> None:
        with atomic_path(self.partial / NORMALIZATION_FILE) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, mean=mean, std=std)

    def write_records(self, post: dict, history: dict, timings: dict, meta: dict) -> None:
        """The JSON records; ``fold.json`` (``meta``) last, as the folder's completion mark."""
        write_json(self.partial / POSTPROCESS_FILE, post)
        write_json(self.partial / HISTORY_FILE, history)
        write_json(self.partial / TIMINGS_FILE, timings)
        write_json(self.partial / FOLD_FILE, meta)

