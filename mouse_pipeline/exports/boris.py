"""BORIS event tables from per-frame labels (``review``'s export, ``predict --format boris``).

The file is BORIS's tabular events layout: tab-separated, one header row, one row per
``START`` or ``STOP`` of a state event, sorted by time (:data:`COLUMNS`). It is what
:func:`mouse_pipeline.annotations_boris.boris_events` reads (label format
``boris_events``), so a file written here reads back to the same frames.

Frames and times
----------------
A bout of frames ``s .. e`` (inclusive) is a ``START`` at ``s / fps`` and a ``STOP`` at
``(e + 1) / fps``: the reader's rule (frame ``i`` is in a bout when
``start <= i / fps + 0.5 ms < stop``, the half millisecond for BORIS's own times rounded to
the millisecond: :func:`mouse_pipeline.annotations_boris.frame_at`) gives back exactly
``s .. e``. Times are written with
Python's shortest exact float text, so no rounding moves an edge.

BORIS has no "not annotated": it describes the whole video, so frames that are ``-1``
(not annotated) in the label contract read back as ``0``. :func:`write_boris_events`
returns how many such frames there were, and logs it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..fileio import atomic_open
from ..metrics import bouts_from_binary

log = logging.getLogger(__name__)

COLUMNS = ("Observation id", "Observation date", "Description", "Observation type", "Source",
           "Media duration (s)", "FPS", "Subject", "Behavior", "Behavioral category",
           "Behavior type", "Time", "Media file name", "Image index", "Comment")


def boris_events(matrix: np.ndarray, behaviors: Sequence[str], fps: float) -> list[tuple[float, int, str, str]]:
    """The events of a label matrix: ``(time s, frame index, START|STOP, behaviour)``, by time.

    At equal times a ``STOP`` comes before a ``START``.
    """
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] != len(behaviors):
        raise ValueError(f"expected a (frames, {len(behaviors)}) label matrix, got shape {matrix.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    events = []
    for j, behavior in enumerate(behaviors):
        for s, e in bouts_from_binary(matrix[:, j]):
            events.append((s / fps, s, "START", behavior))
            events.append(((e + 1) / fps, e + 1, "STOP", behavior))
    events.sort(key=lambda ev: (ev[1], ev[2] != "STOP", ev[3]))
    return events


def write_boris_events(path: str | Path, matrix: np.ndarray, behaviors: Sequence[str], fps: float,
                       observation: str, media_file: str = "", description: str = "") -> int:
    """Write a BORIS tabular events file (atomically); return the frames not annotated.

    Parameters
    ----------
    path
        The file to write (``.tsv`` by convention).
    matrix
        ``(n_frames, n_behaviours)`` labels: ``1`` present, ``0`` absent, ``-1`` not annotated.
    behaviors
        The behaviour names, one per column.
    fps
        The video's frame rate (times are ``frame / fps``).
    observation
        BORIS's observation id (the video id).
    media_file
        The video file, for BORIS's media column.
    description
        Free text for BORIS's description column (what wrote the file).

    Returns
    -------
    int
        Frames with at least one behaviour not annotated (written as absent).
    """
    matrix = np.asarray(matrix)
    events = boris_events(matrix, behaviors, fps)
    unannotated = int((matrix == -1).any(axis=1).sum()) if matrix.size else 0
    if unannotated:
        log.warning("%s: %d frames are not annotated; BORIS has no such state, so they read back as "
                    "absent", path, unannotated)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    duration = repr(matrix.shape[0] / fps)
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for time, frame, status, behavior in events:
            writer.writerow([observation, created, description, "Media file(s)", "", duration, repr(float(fps)),
                             "", behavior, "", status, repr(time), media_file, frame, ""])
    return unannotated
