"""A run's records read back: a fold's results, a final model, and the per-file readers.

Every reader turns a missing, truncated or malformed file into one RunError naming it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import RunError
from ..fileio import first_line
from ..folds import Fold
from .layout import FOLD_FILE, POST_KEYS, POSTPROCESS_FILE, PROBS_FILE


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
    """A fold folder's post-processing record, checked to hold every behaviour."""
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
    """A fold folder's probabilities: ``{"test": {video: probs}, "val": {...}}``.

    Every test video must be there; validation videos may be absent (older runs). ``val``
    holds the fold's validation segments (:attr:`~mouse_pipeline.folds.Fold.val_segments`):
    whole validation videos, the training videos' inner out-of-fold probabilities, or the
    probabilities of each video's validation block.
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
            for split, videos in (("test", fold.test), ("val", fold.val_videos)):
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
