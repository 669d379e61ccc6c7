"""Corrected labels of a review session: edits, versions, atomic saves, the who/when sidecar.

Files, in the labels folder the user names (``review --out``), per video id ``<id>``:

``<id>.csv``
    The labels in the project's own (thesis) layout: a header of behaviours, one row per
    frame, ``1`` present, ``0`` absent, ``-1`` not annotated. It starts as the video's
    original annotations (or all ``-1`` for a video that had none); frames nobody reviewed
    or labelled stay ``-1``, so the file is a valid label file for ``data.labels``
    (``data.label_format: thesis``) and trains like any other.
``<id>.review.json``
    Who changed what when: the base annotations, the stretches marked as reviewed, and per
    save the user, the UTC time (ISO 8601), the versions before and after, the edits and
    how many frames of each behaviour changed. ``labels_sha256`` is the CSV it describes.
``boris/<id>.tsv``
    The labels as a BORIS events table (:mod:`mouse_pipeline.exports.boris`), on request.

Versions: a video's version is the sha256 of its saved ``<id>.csv`` (``"original"`` before
the first save). A save names the version it was made on; if the file changed since (a
second tab, a second server), the save is refused with :class:`StaleEdit` and nothing is
written. The check and the writes hold ``.<id>.review.lock`` in the labels folder
(:mod:`mouse_pipeline.locks`), so two servers cannot both pass the check. Whatever another
server saved is taken up (under the same lock) before a video's labels are shown, saved
on or exported, so a reloaded page shows it and can save again.

Edits (one save is a list, applied in order):

``{"op": "set", "behavior": B, "start": s, "end": e, "value": v}``
    frames ``s .. e`` (inclusive) of behaviour ``B`` become ``v`` (``1``, ``0`` or ``-1``).
    Adding, deleting, moving an edge of and relabelling a bout are all such edits.
``{"op": "reviewed", "start": s, "end": e}``
    the stretch was looked at: its frames not annotated become ``0`` (absent) in every
    behaviour, keeping the ``1`` frames, and the stretch is recorded as reviewed.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..annotations import Labels, read_labels, write_labels_csv
from ..errors import InputError, LockError, PipelineError
from ..exports.boris import write_boris_events
from ..fileio import write_json
from ..locks import acquire_lock
from .sources import ReviewVideo

ORIGINAL = "original"
SIDECAR_SUFFIX = ".review.json"
BORIS_DIR = "boris"
MAX_EDITS = 10_000
LOCK_WAIT_S = 5.0  # how long a save waits for another server's save of the same video


class StaleEdit(PipelineError):
    """The labels changed since the page loaded them (another tab or server saved)."""


class EditError(PipelineError):
    """An edit that cannot be applied (unknown behaviour, frames outside the video...)."""


class ReadOnly(PipelineError):
    """The session was started without a labels folder to write to."""


def check_out_folder(out: Path, protected: list[Path]) -> Path:
    """The labels folder to write, refused when it is (or is inside) an annotations folder.

    Raises
    ------
    InputError
        ``out`` equals or lies inside one of ``protected`` (the original annotations).
    """
    real = Path(os.path.realpath(out))
    for folder in protected:
        base = Path(os.path.realpath(folder))
        if real == base or base in real.parents:
            raise InputError(f"--out {out}: is {'the' if real == base else 'inside the'} annotations folder "
                             f"{folder}; corrected labels never go over the originals: choose another folder")
    return real


def _intervals_union(intervals: list[list[int]]) -> list[list[int]]:
    """Merge inclusive ``[start, end]`` intervals that overlap or touch."""
    merged: list[list[int]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


class _Video:
    def __init__(self, video: ReviewVideo) -> None:
        self.video = video
        self.matrix = video.annotations.matrix.copy()
        self.version = ORIGINAL
        self.reviewed: list[list[int]] = []
        self.history: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class LabelStore:
    """The corrected labels of every video of a session (see the module docstring).

    Parameters
    ----------
    out
        The labels folder to write (``None``: read-only session); checked by
        :func:`check_out_folder` by the caller.
    videos
        The session's videos.
    user
        Who edits (recorded in the sidecar).
    """

    def __init__(self, out: Path | None, videos: list[ReviewVideo], user: str) -> None:
        self.out = Path(out) if out is not None else None
        self.user = user
        self.behaviors = videos[0].annotations.behaviors if videos else ()
        self._videos = {v.video_id: _Video(v) for v in videos}
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            for state in self._videos.values():
                self._resume(state)

    @property
    def writable(self) -> bool:
        return self.out is not None

    def labels_file(self, video_id: str) -> Path:
        assert self.out is not None
        return self.out / f"{video_id}.csv"

    def sidecar_file(self, video_id: str) -> Path:
        assert self.out is not None
        return self.out / f"{video_id}{SIDECAR_SUFFIX}"

    def _current_version(self, video_id: str) -> str:
        path = self.labels_file(video_id)
        if path.is_symlink():
            raise InputError(f"{path}: is a symbolic link; the review writes only plain files into "
                             f"{self.out}: remove it")
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ORIGINAL

    def _resume(self, state: _Video) -> None:
        """The labels as saved in the labels folder (by an earlier session, or by another
        server since), with their reviewed stretches and history; the original annotations
        when nothing is saved there. ``state`` is left as it was when they cannot be read."""
        vid = state.video.video_id
        version = self._current_version(vid)
        if version == ORIGINAL:
            state.matrix, state.reviewed, state.history = state.video.annotations.matrix.copy(), [], []
            state.version = ORIGINAL
            return
        saved = read_labels(self.labels_file(vid), "thesis", self.behaviors)
        if saved.n_frames != state.video.n_frames:
            raise InputError(f"{self.labels_file(vid)}: {saved.n_frames} frames, but video {vid!r} has "
                             f"{state.video.n_frames}; move it away or choose another --out")
        reviewed: list[list[int]] = []
        history: list[dict[str, Any]] = []
        sidecar = self.sidecar_file(vid)
        if sidecar.is_file():
            try:
                record = json.loads(sidecar.read_text(encoding="utf-8"))
                reviewed = _intervals_union([[int(s), int(e)] for s, e in record.get("reviewed", [])])
                history = list(record.get("history", []))
            except (OSError, ValueError, TypeError, AttributeError) as err:
                raise InputError(f"{sidecar}: not a review record ({err}); move it away") from None
        state.matrix, state.reviewed, state.history, state.version = saved.matrix.copy(), reviewed, history, version

    def _follow(self, state: _Video) -> None:
        """Take up what another server saved since this one last read or wrote the video's
        labels. The caller holds ``state.lock`` and the video's lock file."""
        if self._current_version(state.video.video_id) != state.version:
            self._resume(state)

    def _file_lock(self, video_id: str) -> AbstractContextManager[Path]:
        """The video's lock file in the labels folder (one server at a time reads or writes it)."""
        assert self.out is not None
        return acquire_lock(self.out, name=f".{video_id}.review.lock", wait=LOCK_WAIT_S)

    def state(self, video_id: str) -> dict[str, Any]:
        """The current labels of a video for the page: runs per behaviour, version, reviewed."""
        state = self._videos[video_id]
        with state.lock:
            if self.writable:
                try:
                    with self._file_lock(video_id):
                        self._follow(state)
                except (LockError, InputError):  # another server is saving it, or the file is not
                    pass  # readable (a symbolic link...): a save made on this page is checked anyway
            return {"labels": {b: runs(state.matrix[:, j]) for j, b in enumerate(self.behaviors)},
                    "version": state.version, "reviewed": [list(r) for r in state.reviewed],
                    "writable": self.writable,
                    "saved_to": str(self.labels_file(video_id)) if self.writable else None}

    def save(self, video_id: str, version: str, edits: Any) -> dict[str, Any]:
        """Apply ``edits`` on top of ``version`` and save atomically; the new state.

        Raises
        ------
        ReadOnly
            No labels folder was given.
        StaleEdit
            ``version`` is not the video's current version; nothing is written.
        EditError
            An edit is malformed; nothing is written.
        """
        if not self.writable:
            raise ReadOnly("this review session is read-only: start it with --out LABELS_DIR to save")
        state = self._videos[video_id]
        # the thread lock orders this server's saves; the lock file another server's
        with state.lock, self._file_lock(video_id):
            self._follow(state)
            if version != state.version:
                raise StaleEdit(f"the labels of {video_id} were saved elsewhere since this page loaded them "
                                "(another tab?); reload the page and redo the edit")
            matrix, reviewed, changes = self._apply(state, edits)
            n = state.video.n_frames
            changed = {b: int((matrix[:, j] != state.matrix[:, j]).sum()) for j, b in enumerate(self.behaviors)}
            path = self.labels_file(video_id)
            write_labels_csv(path, Labels(self.behaviors, matrix))
            new_version = hashlib.sha256(path.read_bytes()).hexdigest()
            entry = {"user": self.user, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "version_before": state.version, "version_after": new_version,
                     "edits": changes, "frames_changed": changed}
            state.matrix, state.reviewed, state.version = matrix, reviewed, new_version
            state.history.append(entry)
            write_json(self.sidecar_file(video_id), {
                "video": video_id, "source_video": str(state.video.path), "n_frames": n,
                "fps": state.video.fps, "behaviors": list(self.behaviors), "label_format": "thesis",
                "labels_file": path.name, "labels_sha256": new_version,
                "based_on": str(state.video.annotations.source) if state.video.annotations.source else None,
                "reviewed": state.reviewed, "history": state.history})
        return self.state(video_id)

    def _apply(self, state: _Video, edits: Any) -> tuple[np.ndarray, list[list[int]], list[dict]]:
        if not isinstance(edits, list) or not edits or len(edits) > MAX_EDITS:
            raise EditError(f"a save needs a list of 1 to {MAX_EDITS} edits")
        matrix, reviewed, clean = state.matrix.copy(), [list(r) for r in state.reviewed], []
        n = state.video.n_frames
        for k, edit in enumerate(edits):
            if not isinstance(edit, dict):
                raise EditError(f"edit {k}: not an object")
            op, s, e = edit.get("op"), edit.get("start"), edit.get("end")
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in (s, e)) or not 0 <= s <= e < n:
                raise EditError(f"edit {k}: start and end must be frames 0 <= start <= end < {n}")
            if op == "set":
                behavior, value = edit.get("behavior"), edit.get("value")
                if behavior not in self.behaviors:
                    raise EditError(f"edit {k}: unknown behaviour {behavior!r}")
                if value not in (-1, 0, 1) or isinstance(value, bool):
                    raise EditError(f"edit {k}: value must be 1, 0 or -1")
                matrix[s:e + 1, self.behaviors.index(behavior)] = value
                clean.append({"op": "set", "behavior": behavior, "start": s, "end": e, "value": value})
            elif op == "reviewed":
                block = matrix[s:e + 1]
                block[block == -1] = 0
                reviewed = _intervals_union([*reviewed, [s, e]])
                clean.append({"op": "reviewed", "start": s, "end": e})
            else:
                raise EditError(f"edit {k}: op must be 'set' or 'reviewed', not {op!r}")
        return matrix, reviewed, clean

    def export_boris(self, video_id: str) -> Path:
        """Write the video's current labels as a BORIS events table; its path."""
        if not self.writable:
            raise ReadOnly("this review session is read-only: start it with --out LABELS_DIR to export")
        state = self._videos[video_id]
        with state.lock, self._file_lock(video_id):
            self._follow(state)
            folder = self.out / BORIS_DIR
            if folder.is_symlink():
                raise InputError(f"{folder}: is a symbolic link; remove it")
            folder.mkdir(exist_ok=True)
            path = folder / f"{video_id}.tsv"
            write_boris_events(path, state.matrix, self.behaviors, state.video.fps, observation=video_id,
                               media_file=state.video.path.name, description="mouse-pipeline review")
        return path


def runs(column: np.ndarray) -> list[list[int]]:
    """Runs of equal values as ``[start, end (inclusive), value]``."""
    column = np.asarray(column)
    if column.size == 0:
        return []
    edges = np.flatnonzero(np.diff(column)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges - 1, [column.size - 1]])
    return [[int(s), int(e), int(column[s])] for s, e in zip(starts, ends, strict=True)]
