"""Input sets of stage 2: which cached streams a model sees, and their fused frame source.

``train.inputs`` lists input sets, each a list of stream names (a backbone, a motion stream
``<backbone>+motion``, ``pose``, an imported stream); null means each of
``extract.backbones`` alone. An input set plays the part a backbone played before: it
names a run's ``<set>/<model>`` folders, a worker's loaded videos, a model of the report
and predict. Its name is its streams joined by :data:`JOIN` (``resnet50v2,pose``), which
is safe as a folder name and cannot be confused with the ``+`` inside motion stream
names; a one-stream set is named by its stream, so runs without ``train.inputs`` keep
their folder names. :func:`display_name` is the readable form (``resnet50v2 & pose``).

A set's per-frame features are its streams' features side by side, in the listed order
(:class:`FusedFeatures`). The model's ``Normalization`` layer standardises every column
by the training videos' mean and variance, so the concatenation is standardised per
stream (each stream's columns by their own statistics) without further work; the widths
of a set's streams travel as ``VideoData.stream_dims`` for the optional per-stream
projection (:mod:`mouse_pipeline.sequences.fusion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: What joins the streams of an input set in its name (and run folder name).
JOIN = ","


def input_sets(cfg: Any) -> list[str]:
    """The names of the run's input sets: ``train.inputs``, or each backbone alone."""
    if cfg.train.inputs is None:
        return list(cfg.extract.backbones)
    return [set_name(streams) for streams in cfg.train.inputs]


def set_name(streams: Sequence[str]) -> str:
    """The name of an input set of these streams."""
    return JOIN.join(streams)


def streams_of(name: str) -> tuple[str, ...]:
    """The streams of an input set, from its name."""
    return tuple(name.split(JOIN))


def display_name(name: str) -> str:
    """The readable form of an input set's (or ``<set>/<model>``'s) name."""
    return name.replace(JOIN, " & ")


def all_streams(names: Sequence[str]) -> list[str]:
    """Every stream the input sets ``names`` read, once each, in order of appearance."""
    return list(dict.fromkeys(s for n in names for s in streams_of(n)))


class FusedFeatures:
    """Several streams' frame sources of one video read as one: rows side by side.

    Slices like a ``(n_frames, sum of dims)`` array; ``features[a:b]`` reads the same
    frames from every part (each reading only those rows from its file, when it is a
    :class:`~mouse_pipeline.dataset.CachedFeatures`) and concatenates them. Every part
    must have the same number of frames (checked by the caller, who knows the files).
    """

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)
        n = {len(p) for p in self.parts}
        if len(n) != 1:
            raise ValueError(f"fused streams disagree in frame count: {sorted(n)}")
        self.shape = (int(self.parts[0].shape[0]), sum(int(p.shape[1]) for p in self.parts))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.concatenate([np.asarray(p[key], dtype=np.float32) for p in self.parts], axis=-1)

    def check_finite(self) -> None:
        """Each part's check (a CacheError naming its file and first bad frame)."""
        for p in self.parts:
            p.check_finite()

    def load(self) -> np.ndarray:
        """Every frame, as one float32 array."""
        try:
            return self[:]
        finally:
            self.close()

    def close(self) -> None:
        for p in self.parts:
            if hasattr(p, "close"):
                p.close()
