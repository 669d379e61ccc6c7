"""BORIS readers for :mod:`mouse_pipeline.annotations` (events and aggregated exports).

Both turn a BORIS export, already split into ``(line number, cells)`` rows, into bouts of
``(behaviour, start s, stop s, line number)``; :func:`bouts_to_matrix` turns bouts into the
per-frame matrix of the label contract (see :mod:`mouse_pipeline.annotations`).

Times are taken in seconds of the video: BORIS adds an observation's time offset to the
times it exports (and names it in a ``Time offset (s)`` column, or a metadata line above
the header in older exports), so the offset is subtracted again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mouse_pipeline.errors import InputError

logger = logging.getLogger("mouse_pipeline.annotations")

Rows = list[tuple[int, list[str]]]

#: BORIS writes event times rounded to the millisecond (the player's position when the event
#: was coded): the time of frame ``i`` may be written up to half a millisecond after ``i / fps``.
_HALF_MS = 0.0005
#: The column (or metadata line) of an observation's time offset, which BORIS adds to its times.
_OFFSET = "Time offset (s)"

_Bout = tuple[str, float, float, int]  # behaviour, start s, stop s, line number


def _find_header(
    path: Path, rows: Rows, required: Sequence[Sequence[str]]
) -> tuple[int, dict[str, int]]:
    """Index of the header row (each group in ``required`` needs one of its names)."""
    for i, (_, cells) in enumerate(rows):
        if all(any(name in cells for name in group) for group in required):
            return i, {name: j for j, name in enumerate(cells) if name}
    wanted = [" or ".join(group) for group in required]
    raise InputError(
        f"label file {path}: no header row with columns {wanted}; is it a BORIS export?"
    )


def _seconds(path: Path, line_no: int, column: str, cell: str) -> float:
    value = _number(path, line_no, column, cell, "time")
    if value < 0:
        raise InputError(f"label file {path}, line {line_no}, column {column!r}: bad time {cell!r}")
    return value


def _time_offset(path: Path, rows: Rows, h: int, col: dict[str, int]) -> Callable[[int, list[str]], float]:
    """The observation's BORIS time offset per data row: ``offset(line_no, cells)`` in seconds.

    BORIS adds the observation's time offset to every event time it records and exports
    (its own clip extraction subtracts it again to find the video position); exports name
    it in a ``Time offset (s)`` column, older ones in a metadata line above the header.
    No offset given: 0.
    """
    default = 0.0
    for line_no, cells in rows[:h]:
        if len(cells) > 1 and cells[0] == _OFFSET and cells[1]:
            default = _number(path, line_no, _OFFSET, cells[1])
    j = col.get(_OFFSET)

    def offset(line_no: int, cells: list[str]) -> float:
        if j is None or j >= len(cells) or cells[j].upper() in ("", "NA", "NAN"):
            return default
        return _number(path, line_no, _OFFSET, cells[j])

    return offset


def _number(path: Path, line_no: int, column: str, cell: str, what: str = "value") -> float:
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"label file {path}, line {line_no}, column {column!r}: bad {what} {cell!r}")
    return value


def _video_time(path: Path, line_no: int, column: str, cell: str, offset: float) -> float:
    """A BORIS time in seconds of the video: the time less the observation's time offset."""
    time = _seconds(path, line_no, column, cell) - offset
    if time < -_HALF_MS:
        raise InputError(
            f"label file {path}, line {line_no}, column {column!r}: {cell} s less the time offset "
            f"{offset:g} s is before the video's start; check the observation's time offset in BORIS"
        )
    return max(time, 0.0)


def boris_events(path: Path, rows: Rows) -> list[_Bout]:
    h, col = _find_header(path, rows, (("Time",), ("Behavior",), ("Status", "Behavior type")))
    status_col = col["Status"] if "Status" in col else col["Behavior type"]
    offset = _time_offset(path, rows, h, col)
    open_at: dict[tuple[str, str], tuple[float, int]] = {}
    bouts: list[_Bout] = []
    for line_no, cells in rows[h + 1 :]:
        if not any(cells):
            continue
        if len(cells) <= max(col["Time"], col["Behavior"], status_col):
            raise InputError(f"label file {path}, line {line_no}: too few cells for an event")
        status = cells[status_col].upper()
        behavior = cells[col["Behavior"]]
        subject = cells[col["Subject"]] if "Subject" in col and col["Subject"] < len(cells) else ""
        key = (subject, behavior)
        if status == "POINT":
            continue
        time = _video_time(path, line_no, "Time", cells[col["Time"]], offset(line_no, cells))
        if status == "START":
            if key in open_at:
                raise InputError(
                    f"label file {path}, line {line_no}: START of {behavior!r} while the START "
                    f"at line {open_at[key][1]} has no STOP; fix the pairing in BORIS"
                )
            open_at[key] = (time, line_no)
        elif status == "STOP":
            if key not in open_at:
                raise InputError(
                    f"label file {path}, line {line_no}: STOP of {behavior!r} without a START; "
                    "fix the pairing in BORIS"
                )
            start, start_line = open_at.pop(key)
            if time < start:
                raise InputError(
                    f"label file {path}, line {line_no}: STOP of {behavior!r} at {time} s is "
                    f"before its START at {start} s (line {start_line})"
                )
            bouts.append((behavior, start, time, start_line))
        else:
            raise InputError(
                f"label file {path}, line {line_no}: status {cells[status_col]!r} is not "
                "START, STOP or POINT"
            )
    if open_at:
        (_, behavior), (_, line_no) = next(iter(open_at.items()))
        raise InputError(
            f"label file {path}, line {line_no}: START of {behavior!r} has no STOP; "
            "close the bout in BORIS"
        )
    return bouts


def boris_aggregated(path: Path, rows: Rows) -> list[_Bout]:
    h, col = _find_header(path, rows, (("Behavior",), ("Start (s)",), ("Stop (s)",)))
    offset = _time_offset(path, rows, h, col)
    bouts: list[_Bout] = []
    for line_no, cells in rows[h + 1 :]:
        if not any(cells):
            continue
        if len(cells) <= max(col["Behavior"], col["Start (s)"], col["Stop (s)"]):
            raise InputError(f"label file {path}, line {line_no}: too few cells for a bout")
        kind = cells[col["Behavior type"]].upper() if "Behavior type" in col else ""
        stop_cell = cells[col["Stop (s)"]]
        if kind == "POINT" or stop_cell.upper() in ("", "NA", "NAN"):
            logger.debug("Label file %s, line %d: point event ignored", path, line_no)
            continue
        start = _video_time(path, line_no, "Start (s)", cells[col["Start (s)"]], offset(line_no, cells))
        stop = _video_time(path, line_no, "Stop (s)", stop_cell, offset(line_no, cells))
        if stop < start:
            raise InputError(f"label file {path}, line {line_no}: Stop (s) is before Start (s)")
        bouts.append((cells[col["Behavior"]], start, stop, line_no))
    return bouts


def frame_at(seconds: float, fps: float) -> int:
    """The first frame whose time is at or after ``seconds`` (a bout's first frame, or the
    frame after its last).

    A frame's time is ``i / fps`` plus half a millisecond (at most half a frame): BORIS
    rounds times to the millisecond, so at 30 fps frame 2 (0.0667 s) is written 0.067 s and
    must still be frame 2, not 3. Times exactly at ``i / fps`` (this project's BORIS
    exports) give frame ``i``; the product is rounded to 1e-6 frame first, so that
    ``0.3 s * 10 fps`` is frame 3.

    Parameters
    ----------
    seconds
        A bout's start or stop time.
    fps
        The video's frame rate.

    Returns
    -------
    int
        The smallest ``i`` with ``seconds <= i / fps + min(0.5 ms, 0.5 / fps)``.
    """
    slack = min(_HALF_MS * fps, 0.5)  # in frames
    return math.ceil(round(seconds * fps - slack, 6))


def bouts_to_matrix(
    path: Path,
    bouts: list[_Bout],
    behaviors: tuple[str, ...],
    columns: dict[str, str],
    fps: float,
    n_frames: int,
) -> np.ndarray:
    found = sorted({b for b, *_ in bouts})
    mapped = {name: columns.get(name, name) for name in found}
    for behavior in behaviors:
        if behavior not in mapped.values():
            logger.warning(
                "Label file %s has no bout of %r: all its frames are 0 (behaviours found: %s)",
                path,
                behavior,
                found,
            )
    ignored = [name for name, target in mapped.items() if target not in behaviors]
    if ignored:
        logger.debug("Label file %s: ignoring behaviours %s", path, ignored)
    matrix = np.zeros((n_frames, len(behaviors)), dtype=np.int8)
    index = {b: k for k, b in enumerate(behaviors)}
    for name, start, stop, line_no in bouts:
        k = index.get(mapped[name])
        if k is None:
            continue
        first = frame_at(start, fps)
        end = frame_at(stop, fps)  # exclusive
        if first >= n_frames and end > first:
            raise InputError(
                f"label file {path}, line {line_no}: bout of {name!r} starts at {start} s = frame "
                f"{first}, past the video's {n_frames} frames at {fps} fps; check fps and video"
            )
        matrix[first : min(end, n_frames), k] = 1
    return matrix
