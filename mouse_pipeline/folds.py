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
_FOLDS_VERSION = 1


@dataclass(frozen=True)
class Fold:
    """The videos that train, validate and test one model."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return {
            "index": self.index,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
        }

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
        return cls(int(data["index"]), *(tuple(lists[key]) for key in ("train", "val", "test")))


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


def check_no_leakage(folds: Sequence[Fold]) -> None:
    """Raise :class:`RunError` if any fold shares a video between train, val and test."""
    for fold in folds:
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
    """Write ``folds.json`` atomically (:func:`~mouse_pipeline.fileio.write_json`)."""
    write_json(path, {"version": _FOLDS_VERSION, "folds": [fold.to_dict() for fold in folds]})


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
    try:
        folds = [Fold.from_dict(entry) for entry in payload["folds"]]
    except RunError as err:
        raise RunError(f"{path}: {err}") from None
    check_no_leakage(folds)
    return folds
