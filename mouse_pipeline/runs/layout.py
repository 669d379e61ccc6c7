"""The run folder's layout: every file and folder name of a run, and the schema version.

The one place these names are written; everything else takes them from here.

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
    <backbone>/<model>/fold_<i>.trials.json
                                the scored trials of a fold not yet written (a resumed run
                                replays them, :mod:`.trials`); removed once it is written

A fold folder is built as ``fold_<i>.partial`` and renamed when complete (``fold.json``
is its last file), so a killed run resumes by redoing only unfinished folds, and a
folder with the final name is always whole.
"""

from __future__ import annotations

import re

from ..errors import ConfigError

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
TRIALS_SUFFIX = ".trials.json"
LOG_DIR = "logs"
POST_KEYS = ("threshold", "max_gap", "min_len")
_FOLD_DIR = re.compile(r"fold_(\d+)")


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
