"""Label readers: every annotation format becomes one canonical per-frame matrix.

The label contract
------------------
Inside the library the labels of one video are a :class:`Labels`:

- ``behaviors``: the behaviour names, in the order the config lists them;
- ``matrix``: an ``int8`` array of shape ``(n_frames, n_behaviors)`` where ``1`` means the
  behaviour is present in that frame, ``0`` absent and ``-1`` not annotated (ignored by
  losses and metrics);
- ``source``: the file the labels came from (``None`` when built in memory).

Readers (:func:`read_labels`) convert from:

``thesis``
    CSV with a header of behaviour columns and one ``0``/``1`` row per frame (``-1`` is
    accepted for unlabelled frames). A leading unnamed index column, as pandas writes
    (header starting with ``,`` or ``Unnamed: 0``), is skipped.
``deepethogram``
    CSV whose first column is the frame index, then a ``background`` column (dropped),
    then one column per behaviour; ``-1`` means unlabelled.
``boris_events``
    BORIS tabular events export: a header row with at least ``Time``, ``Behavior`` and
    ``Status`` (or ``Behavior type`` as in BORIS 8), possibly after metadata lines.
    ``START``/``STOP`` rows are paired per subject and behaviour; ``POINT`` rows are
    ignored.
``boris_aggregated``
    BORIS aggregated export: one row per bout with ``Behavior``, ``Start (s)`` and
    ``Stop (s)``.

BORIS times are seconds. Frame ``i`` (0-based) lies at time ``i / fps`` and belongs to a
bout when ``start <= i / fps < stop`` (times are rounded to 1e-6 frame first, so that
``0.3 s * 10 fps`` is frame 3). BORIS annotates the whole video, so frames outside every
bout of a behaviour are ``0``; a requested behaviour with no bout in the file is all ``0``
and logged as a warning naming the behaviours found (a typo shows up there). The BORIS
readers need ``fps`` and ``n_frames`` (from the video).

``columns`` maps file column (or BORIS behaviour) names to behaviour names; names not
mapped keep their own. The output has exactly the requested behaviours, in that order.
Readers accept UTF-8 with or without BOM, CRLF line ends, trailing blank lines, and
tab-separated files.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mouse_pipeline.errors import ConfigError, InputError
from mouse_pipeline.fileio import atomic_open

logger = logging.getLogger(__name__)

FORMATS = ("thesis", "deepethogram", "boris_events", "boris_aggregated")
_CELL_VALUES = {"0": 0, "1": 1, "-1": -1, "0.0": 0, "1.0": 1, "-1.0": -1}


@dataclass(frozen=True, eq=False)
class Labels:
    """Per-frame labels of one video (see the module docstring for the contract)."""

    behaviors: tuple[str, ...]
    matrix: np.ndarray
    source: Path | None = None

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.behaviors):
            raise ValueError(
                f"Expected a label matrix of shape (n_frames, {len(self.behaviors)}), "
                f"but got {matrix.shape}"
            )
        if matrix.size and not np.isin(matrix, (-1, 0, 1)).all():
            raise ValueError("Label matrix values must be -1, 0 or 1")
        object.__setattr__(self, "behaviors", tuple(self.behaviors))
        object.__setattr__(self, "matrix", matrix.astype(np.int8, copy=False))

    @property
    def n_frames(self) -> int:
        """Number of frames (rows of the matrix)."""
        return int(self.matrix.shape[0])


def read_labels(
    path: str | Path,
    fmt: str,
    behaviors: Sequence[str],
    columns: Mapping[str, str] | None = None,
    fps: float | None = None,
    n_frames: int | None = None,
) -> Labels:
    """Read a label file into the canonical :class:`Labels`.

    Parameters
    ----------
    path
        The label file.
    fmt
        One of ``'thesis'``, ``'deepethogram'``, ``'boris_events'``, ``'boris_aggregated'``.
    behaviors
        Behaviour names wanted, in output order.
    columns
        Map from file column (or BORIS behaviour) names to behaviour names.
    fps
        Video frame rate; required for the BORIS formats.
    n_frames
        Number of video frames; required for the BORIS formats.

    Returns
    -------
    Labels
        The labels, with exactly ``behaviors`` in that order.

    Raises
    ------
    InputError
        The file is missing or malformed, or a requested behaviour is absent.
    ConfigError
        Unknown format, or ``fps`` missing for a BORIS format.
    """
    path = Path(path)
    behaviors = tuple(behaviors)
    columns = dict(columns or {})
    if fmt not in FORMATS:
        raise ConfigError(f"unknown label format {fmt!r} for {path}: use one of {FORMATS}")
    rows = _read_rows(path)
    if fmt in ("thesis", "deepethogram"):
        matrix = _read_frame_table(path, rows, fmt, behaviors, columns)
    else:
        if fps is None or not fps > 0:
            raise ConfigError(f"reading BORIS labels {path} needs the video's fps (got {fps})")
        if n_frames is None:
            raise InputError(f"reading BORIS labels {path} needs the video's frame count")
        bouts = (_boris_events if fmt == "boris_events" else _boris_aggregated)(path, rows)
        matrix = _bouts_to_matrix(path, bouts, behaviors, columns, float(fps), int(n_frames))
    return Labels(behaviors, matrix, path)


def check_length(labels: Labels, n_frames: int, max_mismatch: int, video_id: str) -> Labels:
    """Reconcile the label length with the video's frame count.

    Parameters
    ----------
    labels
        Labels read from a file.
    n_frames
        The video's frame count.
    max_mismatch
        Largest tolerated difference (config key ``data.max_frame_mismatch``).
    video_id
        The video, for messages.

    Returns
    -------
    Labels
        ``labels`` itself when the counts agree; otherwise trimmed, or padded with ``-1``
        (not annotated), to ``n_frames`` (a warning states the mismatch).

    Raises
    ------
    InputError
        The difference exceeds ``max_mismatch``.
    """
    diff = labels.n_frames - n_frames
    if diff == 0:
        return labels
    if abs(diff) > max_mismatch:
        raise InputError(
            f"labels {labels.source} have {labels.n_frames} frames but video {video_id!r} has "
            f"{n_frames} (difference {abs(diff)} > data.max_frame_mismatch={max_mismatch}): "
            "fix the label file or raise data.max_frame_mismatch"
        )
    if diff > 0:
        matrix = labels.matrix[:n_frames]
        action = f"trimmed the last {diff} label rows"
    else:
        pad = np.full((-diff, len(labels.behaviors)), -1, dtype=np.int8)
        matrix = np.concatenate([labels.matrix, pad])
        action = f"padded {-diff} frames as not annotated"
    logger.warning(
        "Video %r: labels %s have %d frames, video has %d (within data.max_frame_mismatch=%d); %s",
        video_id,
        labels.source,
        labels.n_frames,
        n_frames,
        max_mismatch,
        action,
    )
    return Labels(labels.behaviors, matrix, labels.source)


def write_labels_csv(path: str | Path, labels: Labels) -> None:
    """Write labels atomically in the thesis layout (header of behaviours, one row per frame)."""
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(labels.behaviors)
        writer.writerows(labels.matrix.tolist())


# -- tables of per-frame values -------------------------------------------------------


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Rows as (line number, stripped cells), without trailing blank rows."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"label file {path} does not exist: check the labels path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read label file {path}: {err}") from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    rows = [(reader.line_num, [cell.strip() for cell in row]) for row in reader]
    while rows and not any(rows[-1][1]):
        rows.pop()
    while rows and not any(rows[0][1]):  # blank lines before the header
        rows.pop(0)
    if not rows:
        raise InputError(f"label file {path} is empty")
    return rows


def _resolve(
    path: Path,
    found: Sequence[str],
    behaviors: tuple[str, ...],
    columns: dict[str, str],
    drop: Sequence[str] = (),
) -> dict[str, int]:
    """Map each requested behaviour to its position in ``found`` (file column names)."""
    where: dict[str, int] = {}
    for i, name in enumerate(found):
        if not name or name in drop:
            continue
        target = columns.get(name, name)
        if target in where:
            raise InputError(f"label file {path}: two columns give behaviour {target!r}")
        where[target] = i
    missing = [b for b in behaviors if b not in where]
    if missing:
        raise InputError(
            f"label file {path} lacks behaviour(s) {missing}; columns found: {list(found)} "
            "(map file columns to behaviours with data.label_columns)"
        )
    extra = [found[i] for b, i in where.items() if b not in behaviors]
    if extra:
        logger.debug("Label file %s: ignoring columns %s", path, extra)
    return {b: where[b] for b in behaviors}


def _read_frame_table(
    path: Path,
    rows: list[tuple[int, list[str]]],
    fmt: str,
    behaviors: tuple[str, ...],
    columns: dict[str, str],
) -> np.ndarray:
    header = rows[0][1]
    skip_index = fmt == "deepethogram" or header[0] == "" or header[0].startswith("Unnamed")
    names = header[1:] if skip_index else header
    drop = ("background",) if fmt == "deepethogram" else ()
    where = _resolve(path, names, behaviors, columns, drop)
    data = rows[1:]
    for row_no, (line_no, cells) in enumerate(data, start=1):
        if len(cells) != len(header):
            raise InputError(
                f"label file {path}, data row {row_no} (line {line_no}): {len(cells)} cells "
                f"but the header has {len(header)}; fix or remove that row"
            )
    offset = 1 if skip_index else 0
    table = np.array([cells for _, cells in data], dtype=str).reshape(len(data), len(header))
    matrix = np.empty((len(data), len(behaviors)), dtype=np.int8)
    for k, col in enumerate(where.values()):
        cells = table[:, col + offset]
        bad = ~np.isin(cells, list(_CELL_VALUES))
        if bad.any():
            r = int(np.argmax(bad))
            raise InputError(
                f"label file {path}, data row {r + 1} (line {data[r][0]}), column "
                f"{header[col + offset]!r}: value {cells[r]!r} is not 0, 1 or -1; fix that cell"
            )
        matrix[:, k] = [_CELL_VALUES[c] for c in cells]
    if fmt == "deepethogram" and len(data):
        _check_index(path, table[:, 0], data)
    return matrix


def _check_index(path: Path, cells: np.ndarray, data: list[tuple[int, list[str]]]) -> None:
    """The DeepEthogram frame index must count up by one."""
    try:
        index = np.array([int(float(c)) for c in cells])
    except ValueError:
        raise InputError(f"label file {path}: first column is not a frame index") from None
    bad = np.flatnonzero(np.diff(index) != 1)
    if bad.size:
        r = int(bad[0]) + 1
        raise InputError(
            f"label file {path}, data row {r + 1} (line {data[r][0]}): frame index "
            f"{index[r]} follows {index[r - 1]}; rows must be consecutive frames"
        )


# -- BORIS ---------------------------------------------------------------------------

_Bout = tuple[str, float, float, int]  # behaviour, start s, stop s, line number


def _find_header(
    path: Path, rows: list[tuple[int, list[str]]], required: Sequence[Sequence[str]]
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
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise InputError(f"label file {path}, line {line_no}, column {column!r}: bad time {cell!r}")
    return value


def _boris_events(path: Path, rows: list[tuple[int, list[str]]]) -> list[_Bout]:
    h, col = _find_header(path, rows, (("Time",), ("Behavior",), ("Status", "Behavior type")))
    status_col = col["Status"] if "Status" in col else col["Behavior type"]
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
        time = _seconds(path, line_no, "Time", cells[col["Time"]])
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


def _boris_aggregated(path: Path, rows: list[tuple[int, list[str]]]) -> list[_Bout]:
    h, col = _find_header(path, rows, (("Behavior",), ("Start (s)",), ("Stop (s)",)))
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
        start = _seconds(path, line_no, "Start (s)", cells[col["Start (s)"]])
        stop = _seconds(path, line_no, "Stop (s)", stop_cell)
        if stop < start:
            raise InputError(f"label file {path}, line {line_no}: Stop (s) is before Start (s)")
        bouts.append((cells[col["Behavior"]], start, stop, line_no))
    return bouts


def _bouts_to_matrix(
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
        first = math.ceil(round(start * fps, 6))
        end = math.ceil(round(stop * fps, 6))  # exclusive
        if first >= n_frames and end > first:
            raise InputError(
                f"label file {path}, line {line_no}: bout of {name!r} starts at {start} s = frame "
                f"{first}, past the video's {n_frames} frames at {fps} fps; check fps and video"
            )
        matrix[first : min(end, n_frames), k] = 1
    return matrix
