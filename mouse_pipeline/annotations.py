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
    CSV whose first column is the frame index (0, 1, 2, ...: any other start or step is
    refused), then a ``background`` column (dropped), then one column per behaviour;
    ``-1`` means unlabelled.
``boris_events``
    BORIS tabular events export: a header row with at least ``Time``, ``Behavior`` and
    ``Status`` (or ``Behavior type`` as in BORIS 8), possibly after metadata lines.
    ``START``/``STOP`` rows are paired per subject and behaviour; ``POINT`` rows are
    ignored.
``boris_aggregated``
    BORIS aggregated export: one row per bout with ``Behavior``, ``Start (s)`` and
    ``Stop (s)``.

BORIS times are seconds (less the observation's ``Time offset (s)``, which BORIS adds to
every time it exports). Frame ``i`` (0-based) lies at time ``t_i = i / fps`` and belongs
to a bout when ``start <= t_i + 0.5 ms < stop`` (times are rounded to 1e-6 frame first, so
that ``0.3 s * 10 fps`` is frame 3). The half millisecond (at most half a frame) is
because BORIS writes times rounded to the millisecond: at 30 fps a bout coded from frame 2
(0.0667 s) to frame 5 is written ``0.067``/``0.167`` and must read back as frames 2..4,
not 3..5. BORIS annotates the whole video, so frames outside every
bout of a behaviour are ``0``; a requested behaviour with no bout in the file is all ``0``
and logged as a warning naming the behaviours found (a typo shows up there). The BORIS
readers need ``fps`` and ``n_frames`` (from the video).

``columns`` maps file column (or BORIS behaviour) names to behaviour names; names not
mapped keep their own. The output has exactly the requested behaviours, in that order.
Readers accept UTF-8 with or without BOM, CRLF line ends, trailing blank lines, and
tab-separated files. They refuse, in one line naming the file: a file that is not UTF-8
(with the byte offset and line of the first undecodable byte), a header without data
rows, and a column name twice in the header.

Finding and inspecting files: :func:`find_label_file` is a video's label file in the labels
folder (``<video>.csv``, ``.tsv`` or ``.txt``; two of them for one video are refused, naming
both); :func:`label_behaviors` lists the behaviours a file holds (without a frame-index
column: see :func:`has_index_column`). The BORIS readers live in
:mod:`mouse_pipeline.annotations_boris`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mouse_pipeline.annotations_boris import boris_aggregated, boris_events, bouts_to_matrix
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
    rows = read_rows(path)
    if fmt in ("thesis", "deepethogram"):
        matrix = _read_frame_table(path, rows, fmt, behaviors, columns)
    else:
        if fps is None or not fps > 0:
            raise ConfigError(f"reading BORIS labels {path} needs the video's fps (got {fps})")
        if n_frames is None:
            raise InputError(f"reading BORIS labels {path} needs the video's frame count")
        bouts = (boris_events if fmt == "boris_events" else boris_aggregated)(path, rows)
        matrix = bouts_to_matrix(path, bouts, behaviors, columns, float(fps), int(n_frames))
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


# -- files, tables of per-frame values ------------------------------------------------

LABEL_SUFFIXES = (".csv", ".tsv", ".txt")
#: First-column names that mark a frame index rather than a behaviour (compared lower-case).
INDEX_NAMES = ("", "frame", "frames", "frame_index", "frame_number", "frame_no", "index", "idx")
_BOM = b"\xef\xbb\xbf"


def find_label_file(folder: str | Path, video: str | Sequence[str]) -> Path | None:
    """The label file of one video: ``<folder>/<stem>.csv``, ``.tsv`` or ``.txt``, or None.

    Parameters
    ----------
    folder
        The labels folder (config key ``data.labels``).
    video
        The video id or file stem, or several names the video's file may have (its real
        stem and its id, as ``dataset.VideoFile.stems``). Suffixes match in any case.

    Raises
    ------
    InputError
        The folder does not exist or is a file, or more than one candidate exists (naming
        them all).
    """
    folder = Path(folder)
    stems = (video,) if isinstance(video, str) else tuple(video)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.is_file() else "does not exist"
        raise InputError(f"{folder}: labels folder {what}; set data.labels to the folder of label files")
    found = sorted(p for p in folder.iterdir() if p.stem in stems and p.suffix.lower() in LABEL_SUFFIXES)
    for p in found:
        if not p.is_file():
            raise InputError(f"{p}: is a folder, not a label file; move it away or put the video's "
                             "labels there as a file")
    if len(found) > 1:
        raise InputError(f"{found[0]}: video {stems[0]} has {len(found)} label files "
                         f"({', '.join(p.name for p in found)}); keep one of them in {folder}")
    return found[0] if found else None


def read_text(path: Path, what: str = "label file") -> str:
    """A text file as UTF-8 (BOM or not); InputError naming the first undecodable byte."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist: check the path") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read this {what} ({err.strerror or err}); check "
                         "the path and its permissions") from None
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as err:
        at = skip + err.start
        line = data.count(b"\n", 0, at) + 1
        raise InputError(
            f"{path}: this {what} is not UTF-8 text: byte 0x{data[at]:02x} at byte offset {at} "
            f"(line {line}) cannot be decoded; save it as UTF-8 "
            "(e.g. \"CSV UTF-8\" in a spreadsheet; Latin-1 and Windows-1252 files are not read)"
        ) from None


def read_rows(path: Path, what: str = "label file") -> list[tuple[int, list[str]]]:
    """Rows as (line number, stripped cells), without leading or trailing blank rows.

    Comma- or tab-separated (whichever the first non-blank line has more of).
    """
    text = read_text(path, what)
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = "\t" if first.count("\t") > first.count(",") else ","
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    rows = [(reader.line_num, [cell.strip() for cell in row]) for row in reader]
    while rows and not any(rows[-1][1]):
        rows.pop()
    while rows and not any(rows[0][1]):  # blank lines before the header
        rows.pop(0)
    if not rows:
        raise InputError(f"{what} {path} is empty")
    return rows


def has_index_column(header: Sequence[str], first_cells: Sequence[str]) -> bool:
    """Whether a table's first column is a frame index, not a behaviour.

    By its name (:data:`INDEX_NAMES`, or pandas' ``Unnamed: 0``), or by holding exactly
    the integers ``0 .. N-1`` with ``N >= 3`` (a value 2 is never a label).
    """
    if not header:
        return False
    name = header[0].lower()
    if name in INDEX_NAMES or name.startswith("unnamed"):
        return True
    return len(first_cells) >= 3 and list(first_cells) == [str(i) for i in range(len(first_cells))]


def label_behaviors(path: str | Path, fmt: str, columns: Mapping[str, str] | None = None) -> list[str]:
    """The behaviours a label file holds, in file order, after ``columns`` renames them.

    Frame tables: every column except a frame index (always the first in DeepEthogram
    files, see :func:`has_index_column` for thesis files) and DeepEthogram's
    ``background``. BORIS: every behaviour with a bout, sorted.
    """
    path, columns = Path(path), dict(columns or {})
    if fmt not in FORMATS:
        raise ConfigError(f"unknown label format {fmt!r} for {path}: use one of {FORMATS}")
    rows = read_rows(path)
    if fmt in ("boris_events", "boris_aggregated"):
        bouts = (boris_events if fmt == "boris_events" else boris_aggregated)(path, rows)
        names = sorted({b for b, *_ in bouts})
    else:
        header = rows[0][1]
        first = [cells[0] if cells else "" for _, cells in rows[1:]]
        skip = fmt == "deepethogram" or has_index_column(header, first)
        drop = ("", "background") if fmt == "deepethogram" else ("",)
        names = [h for h in header[1 if skip else 0:] if h not in drop]
    return list(dict.fromkeys(columns.get(n, n) for n in names))


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
            other = found[where[target]]
            what = (f"column {name!r} appears twice" if other == name
                    else f"columns {other!r} and {name!r} both give behaviour {target!r}")
            raise InputError(f"{path}: {what}; remove or rename one so it is clear which to read")
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
    header, data = rows[0][1], rows[1:]
    if not data:
        raise InputError(f"{path}: the label file has a header but no data rows; "
                         "export the labels again (one row per frame)")
    skip_index = fmt == "deepethogram" or header[0] == "" or header[0].startswith("Unnamed")
    names = header[1:] if skip_index else header
    drop = ("background",) if fmt == "deepethogram" else ()
    where = _resolve(path, names, behaviors, columns, drop)
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
                f"{header[col + offset]!r}: value {str(cells[r])!r} is not 0, 1 or -1; fix that cell"
            )
        matrix[:, k] = [_CELL_VALUES[c] for c in cells]
    if fmt == "deepethogram":
        _check_index(path, table[:, 0], data)
    elif skip_index:
        _warn_index(path, table[:, 0])
    return matrix


def _warn_index(path: Path, cells: np.ndarray) -> None:
    """Warn when a thesis file's unnamed index column (pandas') does not count 0, 1, 2, ...:
    rows are read as frames in order whatever it says, and a file cut from a longer table (or
    a 1-based index) is then read shifted."""
    try:
        index = np.array([float(c) for c in cells])
    except ValueError:
        return  # not numbers: not a frame index, nothing to compare
    if not np.array_equal(index, np.arange(len(index))):
        first_off = int(np.argmax(index != np.arange(len(index))))
        logger.warning("label file %s: its index column does not count 0, 1, 2, ... (row %d says %g); rows "
                       "are read as frames 0, 1, 2, ... of the video in order: if the file was cut from a "
                       "longer table, its labels are not on the right frames", path, first_off + 1,
                       index[first_off])


def _check_index(path: Path, cells: np.ndarray, data: list[tuple[int, list[str]]]) -> None:
    """The DeepEthogram frame index must start at 0 and count up by one (row ``i`` is frame ``i``)."""
    try:
        index = [int(float(c)) for c in cells]
    except ValueError:
        raise InputError(f"label file {path}: first column is not a frame index") from None
    if index[0] != 0:
        raise InputError(
            f"label file {path}, data row 1 (line {data[0][0]}): frame index starts at {index[0]}, "
            "not 0; rows are read as frames 0, 1, 2, ... of the video, so export every frame "
            "from frame 0 (a 1-based index: subtract 1)"
        )
    bad = np.flatnonzero(np.diff(index) != 1)
    if bad.size:
        r = int(bad[0]) + 1
        raise InputError(
            f"label file {path}, data row {r + 1} (line {data[r][0]}): frame index "
            f"{index[r]} follows {index[r - 1]}; rows must be consecutive frames"
        )
