"""The fold writer: one fold folder built under ``.partial`` and renamed into place."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from ..fileio import atomic_path, fsync_path, write_json
from .layout import (
    FOLD_FILE,
    HISTORY_FILE,
    NORMALIZATION_FILE,
    PARTIAL,
    POSTPROCESS_FILE,
    PROBS_FILE,
    TIMINGS_FILE,
    model_file,
)


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
        """The probabilities: ``{"val": {video: probs}, "test": {...}}``."""
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
