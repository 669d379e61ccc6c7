"""What fits give back, without TensorFlow: a head, a trial's result, a head packed as bytes.

:class:`FitResult` is one fitted head (its Keras model and validation record),
:class:`TrialResult` one trial of one fold (its heads, score and records), and
:class:`PackedHead` a head as it travels between processes (the model as ``.keras``
bytes, saved where it was fitted). They live apart from :mod:`.fit` so that a process
which only schedules and writes (the ``--ray`` driver) can receive, keep and write them
without importing TensorFlow: Keras is imported only to pack or unpack a model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np


def format_seconds(s: float) -> str:
    """``1h02m`` or ``3m07s``."""
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass
class FitResult:
    """A fitted head (one model) with its validation record."""

    model: Any  # a keras.Model
    outputs: list[int]
    history: dict[str, list[float]]
    best_epoch: int
    val_score: float
    fit_seconds: float
    mean: np.ndarray  # standardisation statistics of the training videos
    std: np.ndarray
    pruned_at: int = 0  # the epoch ASHA stopped the fit at (0: not stopped by it)


@dataclass
class PackedHead:
    """A fitted head as it travels between processes (the model as .keras bytes)."""

    model: bytes
    outputs: list[int]
    history: dict[str, list[float]]
    best_epoch: int
    val_score: float
    fit_seconds: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def pack(cls, head: FitResult) -> PackedHead:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "packed.keras"
            head.model.save(path)
            data = path.read_bytes()
        return cls(data, head.outputs, head.history, head.best_epoch, head.val_score,
                   head.fit_seconds, head.mean, head.std)

    def unpack(self) -> FitResult:
        from .models import load_model  # Keras: only where a model is used

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "packed.keras"
            path.write_bytes(self.model)
            model = load_model(path, compile=True)
        return FitResult(model, self.outputs, self.history, self.best_epoch, self.val_score,
                         self.fit_seconds, self.mean, self.std)


@dataclass
class TrialResult:
    """One trial of one fold: its validation score, how it was validated, and the fold's
    heads (or what a refit of them needs).

    ``val_probs`` are the probabilities of the fold's validation segments made by the models
    that validated (inner models, the blocks' validation fit); None for ``videos``, whose
    validation videos the kept heads themselves predict. ``refit_epochs`` (per head) is set
    when the heads are still to be refitted on every training video (:func:`.fit.refit_trial`,
    only for the unit's best trial); ``heads`` is then empty. ``record`` says what validated
    what (inner fits' epochs and scores, the chosen epochs, the gap of ``blocks``);
    ``validation_seconds`` is the fit time of fits that are not the fold's model. With ASHA
    (``train.search.early_stop``), ``rungs`` are each fit's scores at the rungs it reached,
    and ``pruned`` says that a fit was stopped (the trial then has no heads).
    ``choice_score`` (with ``choice_record``), when set, is what ``auto`` keeps the trial by
    instead of ``score`` (``train.auto.select: inner_videos``, :mod:`.choice`).
    """

    heads: list[Any]  # FitResult, or PackedHead on the way from a worker
    score: float
    val_probs: dict[str, np.ndarray] | None = None
    record: dict[str, Any] = field(default_factory=dict)
    refit_epochs: list[int] | None = None
    head_scores: list[float] = field(default_factory=list)
    validation_seconds: float = 0.0
    rungs: dict[str, dict[int, float]] = field(default_factory=dict)
    pruned: bool = False
    choice_score: float | None = None
    choice_record: dict[str, Any] = field(default_factory=dict)

    def pack(self) -> TrialResult:
        return replace(self, heads=[PackedHead.pack(h) for h in self.heads])

    def unpack(self) -> TrialResult:
        return replace(self, heads=[h.unpack() if isinstance(h, PackedHead) else h for h in self.heads])
