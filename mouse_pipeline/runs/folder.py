"""One run folder: its files, its readers, the records of its videos, and its fold writer."""

from __future__ import annotations

import logging
import shutil
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .. import __version__
from ..config import Config, config_from_dict, dump_config
from ..errors import ConfigError, RunError
from ..fileio import first_line, write_json
from ..folds import Fold, load_folds, save_folds
from ..locks import acquire_lock
from .layout import (
    _FOLD_DIR,
    CONFIG_FILE,
    FOLD_FILE,
    FOLDS_FILE,
    HISTORY_FILE,
    LOG_DIR,
    METRICS_FILE,
    PARTIAL,
    POST_KEYS,
    RUN_FILE,
    SCHEMA_VERSION,
    TIMINGS_FILE,
    TRIALS_SUFFIX,
    model_file,
    unit_name,
)
from .records import FinalModel, FoldResult, _read_json, _retrain, read_meta, read_post, read_probs
from .trials import TrialLog, config_fingerprint
from .writer import FoldWriter

log = logging.getLogger(__name__)


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
        for trial_log in self.path.glob(f"*/*/*{TRIALS_SUFFIX}"):  # trials of the old config
            trial_log.unlink()
        for folder in sorted((p for p in self.path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            if not any(folder.iterdir()):
                folder.rmdir()
        if self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    # ----------------------------------------------------------------- folds

    def trial_log(self, cfg: Config, backbone: str, kind: str, index: int) -> TrialLog:
        """The trial log of one fold (:mod:`.trials`), for ``cfg``'s results."""
        unit = self.unit(backbone, kind, index)
        return TrialLog(unit.with_name(unit.name + TRIALS_SUFFIX), config_fingerprint(cfg.to_dict()))

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
        return self.read_model(cfg, backbone, kind, -1)

    def read_model(self, cfg: Config, backbone: str, kind: str, index: int) -> FinalModel:
        """The model of fold ``index`` of ``backbone/kind`` (-1: the final model) with its
        post-processing and window, as a :class:`FinalModel` record."""
        folder = self.unit(backbone, kind, index)
        what = "this final model" if index < 0 else f"fold {index} of {backbone}/{kind}"
        if folder.is_dir() and not self.is_complete(folder):
            raise RunError(f"{folder / FOLD_FILE}: missing, so {what} is not complete; "
                           f"{_retrain(folder)}")
        if not self.is_complete(folder):
            if index >= 0:
                raise RunError(f"{self.path}: fold {index} of {backbone}/{kind} was not trained; run "
                               f"`mouse-pipeline train --config {self.config_file} --run {self.path}`")
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
            fold = Fold.from_dict({"index": index, "test": [], **meta})
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
