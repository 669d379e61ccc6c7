"""Splits by whole video, with validation videos drawn from the training side.

A :class:`Fold` names the videos that train, validate and test one model. A test video is
never used for any choice (early stopping, thresholds, post-processing): those are made
on the fold's validation videos, which are taken from its training side. Folds are saved
in a run folder as ``folds.json``::

    {"version": 1, "folds": [{"index": 0, "train": [...], "val": [...], "test": [...]}]}

Schemes (:func:`make_folds`):

``leave_one_video_out``
    One fold per video, that video as test (folds ordered by sorted video id).
``group_kfold``
    ``k`` folds of whole videos: the sorted ids are shuffled with ``seed`` and cut into
    ``k`` groups whose sizes differ by at most one.
``fixed``
    One fold with the named test videos; training videos are the named ones, or every
    other video when none are named.

Validation videos (``n_val`` per fold) are drawn from each fold's training side with a
generator seeded by ``(seed, fold index)``, so the split is the same on every machine.

What validates a fold (``train.validation``, :func:`plan_validation`):

``videos``
    The ``val`` videos (above); ``folds.json`` entries as in version 1.
``inner_folds``
    No validation videos: ``inner`` holds ``k`` groups of the fold's training videos;
    each inner fit trains on the other groups and predicts its group, so every training
    video is predicted once by a model that did not see it.
``blocks``
    No validation videos: ``blocks`` holds one contiguous block ``[start, stop)`` of each
    training video (``k`` equal blocks, one drawn per video); training windows keep a gap
    of one window length away from it.

``folds.json`` version 2 adds ``validation`` (and ``inner`` or ``blocks``) to the entries
of those two modes; version 1 files (every fold validated by videos) still load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mouse_pipeline.annotations import Labels
from mouse_pipeline.errors import ConfigError, InputError, RunError
from mouse_pipeline.fileio import write_json

logger = logging.getLogger(__name__)

SCHEMES = ("leave_one_video_out", "group_kfold", "fixed")
_FOLDS_VERSION = 2
VALIDATION_MODES = ("videos", "inner_folds", "blocks")


@dataclass(frozen=True)
class Fold:
    """The videos that train, validate and test one model, and what validates it.

    ``validation`` is ``videos`` (the ``val`` videos), ``inner_folds`` (``inner``: the
    groups of training videos held out in turn) or ``blocks`` (``blocks``: one
    ``(video, start, stop)`` frame range of each training video).
    """

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    validation: str = "videos"
    inner: tuple[tuple[str, ...], ...] = ()
    blocks: tuple[tuple[str, int, int], ...] = ()

    @property
    def val_segments(self) -> tuple[tuple[str, int, int | None], ...]:
        """The frames that validate this fold: ``(video, start, stop)``, ``stop`` None for
        the whole video. Each video appears at most once."""
        if self.validation == "inner_folds":
            return tuple((v, 0, None) for v in self.train)
        if self.validation == "blocks":
            return self.blocks
        return tuple((v, 0, None) for v in self.val)

    @property
    def val_videos(self) -> tuple[str, ...]:
        """The videos with validation probabilities (those of :attr:`val_segments`)."""
        return tuple(v for v, _, _ in self.val_segments)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (a ``videos`` fold as in version 1)."""
        out: dict[str, Any] = {
            "index": self.index,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
        }
        if self.validation != "videos":
            out["validation"] = self.validation
        if self.inner:
            out["inner"] = [list(g) for g in self.inner]
        if self.blocks:
            out["blocks"] = [{"video": v, "start": a, "stop": b} for v, a, b in self.blocks]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fold:
        """Inverse of :meth:`to_dict`; raises :class:`RunError` on a malformed entry."""
        if not isinstance(data, Mapping):
            raise RunError(f"fold entry {data!r} is not an object")
        missing = [key for key in ("index", "train", "val", "test") if key not in data]
        if missing:
            raise RunError(f"fold entry {dict(data)!r} lacks {missing}")
        lists = {key: data[key] for key in ("train", "val", "test")}
        if not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists.values()
        ):
            raise RunError(f"fold {data['index']}: train/val/test must be lists of video ids")
        validation = data.get("validation", "videos")
        if validation not in VALIDATION_MODES:
            raise RunError(f"fold {data['index']}: unknown validation {validation!r}")
        inner = data.get("inner", [])
        if not isinstance(inner, list) or not all(
            isinstance(g, list) and all(isinstance(x, str) for x in g) for g in inner
        ):
            raise RunError(f"fold {data['index']}: 'inner' must be a list of lists of video ids")
        blocks = data.get("blocks", [])
        ok = isinstance(blocks, list) and all(
            isinstance(b, Mapping) and isinstance(b.get("video"), str)
            and all(isinstance(b.get(k), int) and b[k] >= 0 for k in ("start", "stop"))
            and b["start"] < b["stop"] for b in blocks
        )
        if not ok:
            raise RunError(f"fold {data['index']}: 'blocks' must be a list of "
                           "{video, start, stop} with 0 <= start < stop")
        if (validation == "inner_folds") != bool(inner) or (validation == "blocks") != bool(blocks):
            raise RunError(f"fold {data['index']}: validation {validation!r} does not match its "
                           "'inner' / 'blocks' records")
        return cls(int(data["index"]), *(tuple(lists[key]) for key in ("train", "val", "test")),
                   validation=validation, inner=tuple(tuple(g) for g in inner),
                   blocks=tuple((b["video"], int(b["start"]), int(b["stop"])) for b in blocks))


def make_folds(
    video_ids: Iterable[str],
    scheme: str,
    k: int = 5,
    n_val: int = 1,
    fixed_train: Sequence[str] = (),
    fixed_test: Sequence[str] = (),
    seed: int = 0,
) -> list[Fold]:
    """Split videos into folds (see the module docstring for the schemes).

    Parameters
    ----------
    video_ids
        All video ids of the dataset (unique).
    scheme
        ``'leave_one_video_out'``, ``'group_kfold'`` or ``'fixed'``.
    k
        Number of folds for ``'group_kfold'`` (``train.folds.k``).
    n_val
        Validation videos per fold, taken from the training side (0 allowed: no validation).
    fixed_train, fixed_test
        Videos of the single ``'fixed'`` fold; empty ``fixed_train`` means all others.
    seed
        Seed for the shuffles; same seed, same folds.

    Returns
    -------
    list of Fold
        Folds whose test sets are disjoint and whose ``train``, ``val``, ``test`` never share
        a video. Ids within each tuple are sorted.

    Raises
    ------
    ConfigError
        Unknown scheme, duplicate ids, too few videos, unknown fixed names.
    """
    ids = list(video_ids)
    duplicates = sorted({v for v in ids if ids.count(v) > 1})
    if duplicates:
        raise ConfigError(f"duplicate video ids {duplicates}: each video must appear once")
    ids = sorted(ids)
    if n_val < 0:
        raise ConfigError(f"train.folds.n_val must be >= 0, got {n_val}")
    if scheme == "leave_one_video_out":
        if len(ids) < 2:
            raise ConfigError(f"leave_one_video_out needs at least 2 videos, got {len(ids)}")
        tests = [[v] for v in ids]
    elif scheme == "group_kfold":
        if k < 2:
            raise ConfigError(f"train.folds.k must be >= 2, got {k}")
        if len(ids) < k:
            raise ConfigError(
                f"group_kfold with train.folds.k={k} needs at least {k} videos, got {len(ids)}"
            )
        order = np.random.default_rng(seed).permutation(len(ids))
        tests = [[ids[i] for i in part] for part in np.array_split(order, k)]
    elif scheme == "fixed":
        tests = [_check_fixed(ids, fixed_train, fixed_test)]
    else:
        raise ConfigError(f"unknown train.folds.scheme {scheme!r}: use one of {SCHEMES}")

    folds = []
    for index, test in enumerate(tests):
        if scheme == "fixed" and fixed_train:
            side = sorted(fixed_train)
        else:
            side = [v for v in ids if v not in test]
        if len(side) < n_val + 1:
            raise ConfigError(
                f"fold {index} has {len(side)} training video(s): not enough to hold out "
                f"train.folds.n_val={n_val} for validation and keep 1 for training"
            )
        rng = np.random.default_rng((seed, index))
        val = sorted(side[i] for i in rng.choice(len(side), size=n_val, replace=False))
        train = tuple(v for v in side if v not in val)
        folds.append(Fold(index, train, tuple(val), tuple(sorted(test))))
    check_no_leakage(folds)
    return folds


def _check_fixed(ids: list[str], train: Sequence[str], test: Sequence[str]) -> list[str]:
    known = set(ids)
    unknown = sorted((set(train) | set(test)) - known)
    if unknown:
        raise ConfigError(f"fixed folds name unknown video(s) {unknown}; known: {ids}")
    if not test:
        raise ConfigError("fixed folds need at least one test video (train.folds.test)")
    both = sorted(set(train) & set(test))
    if both:
        raise ConfigError(f"fixed folds put video(s) {both} in both train and test")
    return list(test)


def plan_validation(
    folds: Sequence[Fold],
    mode: str,
    n_frames: Mapping[str, int],
    inner_k: int = 3,
    blocks_k: int = 5,
    seed: int = 0,
) -> list[Fold]:
    """What validates each fold: ``folds`` (made with ``n_val=0`` for the modes other
    than ``videos``) with their inner groups or validation blocks.

    Parameters
    ----------
    folds
        The folds; for ``videos`` they are returned as they are.
    mode
        ``'videos'``, ``'inner_folds'`` or ``'blocks'`` (``train.validation``).
    n_frames
        Frames of each training video (for ``blocks``).
    inner_k
        Inner folds (``train.inner_folds.k``), capped at the fold's training videos: the
        training videos, shuffled with a generator seeded by ``(seed, fold index + 1, 1)``,
        are cut into groups whose sizes differ by at most one.
    blocks_k
        Equal blocks per training video (``train.blocks.k``); the validation block of each
        video is drawn with a generator seeded by ``(seed, fold index + 1, 2)``.

    Raises
    ------
    ConfigError
        A fold has validation videos, fewer than 2 training videos for ``inner_folds``, or
        a training video shorter than ``blocks_k`` frames.
    """
    if mode not in VALIDATION_MODES:
        raise ConfigError(f"unknown train.validation {mode!r}: use one of {VALIDATION_MODES}")
    if mode == "videos":
        return list(folds)
    out = []
    for fold in folds:
        if fold.val:
            raise ConfigError(f"fold {fold.index}: validation {mode!r} takes no validation videos")
        if mode == "inner_folds":
            if len(fold.train) < 2:
                raise ConfigError(
                    f"fold {fold.index} has {len(fold.train)} training video(s): train.validation "
                    "'inner_folds' needs at least 2 (use train.validation: blocks)")
            k = min(inner_k, len(fold.train))
            order = np.random.default_rng((seed, fold.index + 1, 1)).permutation(len(fold.train))
            groups = tuple(tuple(sorted(fold.train[i] for i in part)) for part in np.array_split(order, k))
            out.append(Fold(fold.index, fold.train, (), fold.test, "inner_folds", inner=groups))
        else:
            rng = np.random.default_rng((seed, fold.index + 1, 2))
            blocks = []
            for v in fold.train:
                n = int(n_frames[v])
                if n < blocks_k:
                    raise ConfigError(f"video {v!r} has {n} frames, fewer than train.blocks.k={blocks_k} "
                                      "blocks; use a smaller train.blocks.k")
                j = int(rng.integers(blocks_k))
                edges = np.linspace(0, n, blocks_k + 1).round().astype(int)
                blocks.append((v, int(edges[j]), int(edges[j + 1])))
            out.append(Fold(fold.index, fold.train, (), fold.test, "blocks", blocks=tuple(blocks)))
    check_no_leakage(out)
    return out


def block_training_ranges(fold: Fold, n_frames: Mapping[str, int], gap: int) -> list[tuple[str, int, int]]:
    """The training frame ranges ``(video, start, stop)`` of a ``blocks`` fold: each training
    video without its validation block and ``gap`` frames either side of it (a training
    window then never holds a validation frame nor one of its ``gap`` neighbours); empty
    ranges are left out."""
    ranges = []
    for v, start, stop in fold.blocks:
        for a, b in ((0, start - gap), (stop + gap, int(n_frames[v]))):
            if b > a:
                ranges.append((v, a, b))
    return ranges


def check_no_leakage(folds: Sequence[Fold]) -> None:
    """Raise :class:`RunError` if any fold shares a video between train, val and test,
    or validates on a test video."""
    for fold in folds:
        inner = sorted(set(fold.test) & {v for g in fold.inner for v in g} | set(fold.test) & {
            v for v, _, _ in fold.blocks})
        if inner:
            raise RunError(f"fold {fold.index}: test video {inner[0]!r} is in its inner folds or blocks")
        pairs = (
            ("test", fold.test, "train", fold.train),
            ("test", fold.test, "val", fold.val),
            ("val", fold.val, "train", fold.train),
        )
        for name_a, a, name_b, b in pairs:
            shared = sorted(set(a) & set(b))
            if shared:
                raise RunError(
                    f"fold {fold.index}: video {shared[0]!r} is in both {name_a} and {name_b}"
                )


def check_positives(folds: Sequence[Fold], labels_by_video: Mapping[str, Labels]) -> None:
    """Check every behaviour has positive frames in each fold's training videos.

    A behaviour without positives in a fold's validation videos is only logged (its
    threshold then falls back to 0.5).

    Raises
    ------
    InputError
        A fold's training videos have no positive frame of some behaviour (all such
        problems in one message), a video has no labels, or videos disagree on behaviours.
    """
    needed = sorted({v for fold in folds for v in (*fold.train, *fold.val)})
    missing = [v for v in needed if v not in labels_by_video]
    if missing:
        raise InputError(f"no labels for video(s) {missing}")
    behaviors = {labels_by_video[v].behaviors for v in needed}
    if len(behaviors) > 1:
        raise InputError(f"videos disagree on the behaviours labelled: {sorted(behaviors)}")
    if not needed:
        return
    names = behaviors.pop()
    positives = {v: (labels_by_video[v].matrix == 1).sum(axis=0) for v in needed}
    problems = []
    for fold in folds:
        for part, videos in (("train", fold.train), ("val", fold.val)):
            if not videos:
                continue
            counts = np.sum([positives[v] for v in videos], axis=0)
            for k in np.flatnonzero(counts == 0):
                if part == "train":
                    problems.append(
                        f"fold {fold.index}: {names[k]!r} has no positive frame "
                        f"in training videos {list(videos)}"
                    )
                else:
                    logger.warning(
                        "Fold %d: %r has no positive frame in validation videos %s",
                        fold.index,
                        names[k],
                        list(videos),
                    )
    if problems:
        raise InputError("; ".join(problems) + " (annotate more videos or change the folds)")


def save_folds(path: str | Path, folds: Sequence[Fold]) -> None:
    """Write ``folds.json`` atomically (:func:`~mouse_pipeline.fileio.write_json`); version 1
    when every fold is validated by videos (what older versions read), else 2."""
    version = 1 if all(f.validation == "videos" for f in folds) else _FOLDS_VERSION
    write_json(path, {"version": version, "folds": [fold.to_dict() for fold in folds]})


def load_folds(path: str | Path) -> list[Fold]:
    """Read ``folds.json`` and check it for leakage.

    Raises
    ------
    RunError
        The file is missing, not valid JSON, malformed, or its folds leak.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} does not exist: is this a run folder?") from None
    except (OSError, ValueError) as err:
        raise RunError(f"cannot read folds from {path}: {err}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("folds"), list):
        raise RunError(f"{path} has no 'folds' list")
    version = payload.get("version", 1)
    if not isinstance(version, int) or version > _FOLDS_VERSION:
        raise RunError(f"{path}: folds version {version!r}, this version reads up to "
                       f"{_FOLDS_VERSION}; use the mouse-pipeline version that wrote it")
    try:
        folds = [Fold.from_dict(entry) for entry in payload["folds"]]
    except RunError as err:
        raise RunError(f"{path}: {err}") from None
    check_no_leakage(folds)
    return folds
