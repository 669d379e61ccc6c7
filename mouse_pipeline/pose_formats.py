"""Pose file formats: one body part's points, for every individual a file holds.

:func:`read_tracks` is the one entry; :mod:`mouse_pipeline.pose` chooses the individual
and cleans the points.

Formats
-------
*CSV* (DeepLabCut analysis CSV, DeepLabCut labelled-data CSV, LightningPose predictions
CSV): read by this module's own parser, which names the row and column of a bad cell.
Three header rows whose first cells are ``scorer``, ``bodyparts``, ``coords`` (a
multi-animal DeepLabCut file has ``individuals`` as its second row); then one row per
frame. Analysis and LightningPose files index rows by frame (0, 1, 2, ...) and give
``x, y, likelihood`` per body part; labelled-data files (``CollectedData_<scorer>.csv``)
index rows by image path (one column, or three in newer DeepLabCut versions) and give
only ``x, y``: every labelled point counts as valid there. Empty cells are missing.

*HDF5* (DeepLabCut ``.h5``, the ``df_with_missing`` table; SLEAP analysis ``.h5``, the
``tracks`` dataset; SLEAP labels ``.slp``): read through ``movement``
(neuroinformatics-unit), imported on the first such file only (about 2 s and 150 MB).
movement's own logging is silenced (its errors become one :class:`InputError` naming the
file; its warnings go to this module's logger) and the warning hook it installs is undone.
A DeepLabCut ``.h5`` is read by pandas and converted by movement, which reshapes the table:
its columns must be every (individual,) body part and coordinate in order, so a file with
DeepLabCut's unique body parts is refused (its CSV is read).
SLEAP gives no score for user-labelled points: a point with coordinates and no score
counts as valid. A ``.slp`` file with several videos gives the first video's tracks.

Safety
------
pandas reads a DeepLabCut ``.h5`` through PyTables, which unpickles its attributes (the
column names). Before pandas opens the file, every value PyTables would unpickle is loaded
by an unpickler that refuses any class or function; a file whose pickles would import or
call anything is refused, so nothing in a pose file can run code.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import pickle
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .fileio import first_line

log = logging.getLogger(__name__)

UNNAMED = ""
"""The key of the only individual of a file that names none (a single-animal file)."""

H5_SUFFIXES = (".h5", ".slp")
_HEADER = ("scorer", "bodyparts", "coords")
_MULTI_HEADER = ("scorer", "individuals", "bodyparts", "coords")
_COORDS = ("x", "y", "likelihood")
_INT = re.compile(r"^\s*\d+\s*$")


@dataclass(frozen=True)
class Track:
    """One individual's points of one body part: ``xy`` (T, 2), NaN where missing, and
    ``likelihood`` (T,), NaN where missing, or None when the file gives none."""

    xy: np.ndarray
    likelihood: np.ndarray | None


def read_tracks(path: Path, bodypart: str) -> dict[str, Track]:
    """``bodypart``'s track for each individual of a pose file (:data:`UNNAMED` when it names none).

    Raises
    ------
    InputError
        The file cannot be read, is not a known layout, lacks the body part, or a value is
        not a number.
    """
    if path.suffix.lower() in H5_SUFFIXES:
        return _read_hdf5(path, bodypart)
    return _read_csv(path, bodypart)


def read_tracks_of(path: Path, bodyparts: list[str]) -> dict[str, dict[str, Track]]:
    """:func:`read_tracks` of several body parts (a CSV file is read once for all)."""
    if path.suffix.lower() in H5_SUFFIXES:
        return {part: _read_hdf5(path, part) for part in bodyparts}
    rows = _csv_rows(path)
    return {part: _read_csv(path, part, rows) for part in bodyparts}


def list_bodyparts(path: Path) -> list[str]:
    """The body parts (SLEAP: nodes) of a pose file, in the file's order.

    Raises
    ------
    InputError
        The file cannot be read or is not a known layout.
    """
    if path.suffix.lower() in H5_SUFFIXES:
        return _hdf5_keypoints(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(itertools.islice(csv.reader(fh), 4))
    except UnicodeDecodeError:
        raise InputError(f"{path}: is not a text file; expected a pose file: a DeepLabCut or "
                         "LightningPose .csv, a DeepLabCut or SLEAP .h5, or a SLEAP .slp") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the pose file ({exc.strerror}); fix its "
                         "permissions") from None
    first = [(r[0].strip() if r else "") for r in rows]
    header = _MULTI_HEADER if first[1:2] == ["individuals"] else _HEADER
    if tuple(first[:len(header)]) != header:
        raise InputError(f"{path}: not a DeepLabCut CSV: expected the first cells of the first "
                         f"three rows to be 'scorer', 'bodyparts', 'coords' (with 'individuals' "
                         f"second in a multi-animal file), got {first[:len(header)]}")
    parts, coords = rows[len(header) - 2], rows[len(header) - 1]
    return list(dict.fromkeys(p.strip() for p, c in zip(parts[1:], coords[1:], strict=False)
                              if p.strip() and c.strip() in _COORDS))


def bodypart_missing(path: Path, bodypart: str, present: list[str]) -> InputError:
    """The error for a body part a file does not have, listing those it has."""
    return InputError(f"{path}: body part {bodypart!r} not found; the file has: "
                      f"{', '.join(present)}; set data.crop.bodypart")


# --------------------------------------------------------------------------- CSV


def _csv_rows(path: Path) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.reader(fh))
    except UnicodeDecodeError:
        raise InputError(f"{path}: is not a text file; expected a pose file: a DeepLabCut or "
                         "LightningPose .csv, a DeepLabCut or SLEAP .h5, or a SLEAP .slp") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the pose file ({exc.strerror}); fix its "
                         "permissions") from None


def _read_csv(path: Path, bodypart: str, rows: list[list[str]] | None = None) -> dict[str, Track]:
    """``bodypart``'s tracks from a CSV file (``rows``: the file's rows, when already read)."""
    rows = _csv_rows(path) if rows is None else rows
    first = [(r[0].strip() if r else "") for r in rows[:4]]
    header = _MULTI_HEADER if first[1:2] == ["individuals"] else _HEADER
    if tuple(first[:len(header)]) != header:
        raise InputError(f"{path}: not a DeepLabCut CSV: expected the first cells of the first "
                         f"three rows to be 'scorer', 'bodyparts', 'coords' (with 'individuals' "
                         f"second in a multi-animal file), got {first[:len(header)]}")
    names = rows[1] if header is _MULTI_HEADER else None
    parts, coords = rows[len(header) - 2], rows[len(header) - 1]
    wanted, n_index = _columns(path, names, parts, coords, bodypart)
    body = rows[len(header):]
    while body and not any(c.strip() for c in body[-1]):
        body.pop()
    if not body:
        raise InputError(f"{path}: has the DeepLabCut header but no data rows")
    labels = [(ind, k) for ind, cols in wanted.items() for k in range(len(cols))]
    flat = [j for cols in wanted.values() for j in cols]
    values = np.empty((len(body), len(flat)))
    index_is_int = n_index == 1
    for i, row in enumerate(body):
        line = i + len(header) + 1
        if len(row) <= max(flat):
            raise InputError(f"{path}: row {line} has {len(row)} cells, the header has "
                             f"{len(coords)}; the file is truncated or malformed")
        index_is_int = index_is_int and bool(_INT.match(row[0]))
        for n, j in enumerate(flat):
            cell = row[j].strip()
            if cell == "" or cell.lower() == "nan":
                values[i, n] = np.nan
                continue
            try:
                values[i, n] = float(cell)
            except ValueError:
                ind, k = labels[n]
                column = "/".join([*([ind] if ind else []), bodypart, _COORDS[k]])
                raise InputError(f"{path}: row {line}: {cell!r} in column {column} is not a "
                                 "number") from None
    if index_is_int:
        frames = np.array([int(r[0]) for r in body])
        wrong = np.flatnonzero(frames != np.arange(len(body)))
        if wrong.size:
            i = int(wrong[0])
            raise InputError(f"{path}: frame index is not 0, 1, 2, ...: row {i + len(header) + 1} "
                             f"has {frames[i]}, expected {i}; export the whole video from DeepLabCut")
    tracks, n = {}, 0
    for ind, cols in wanted.items():
        block = values[:, n:n + len(cols)]
        n += len(cols)
        tracks[ind] = Track(block[:, :2], block[:, 2] if len(cols) == 3 else None)
    return tracks


def _columns(path: Path, names: list[str] | None, parts: list[str], coords: list[str],
             bodypart: str) -> tuple[dict[str, list[int]], int]:
    """Columns of ``bodypart``'s x, y (and likelihood) per individual of a DeepLabCut header,
    and the number of index columns."""
    n_index = 1
    while n_index < len(coords) and coords[n_index].strip() == "":
        n_index += 1
    bad = [c for c in coords[n_index:] if c.strip() not in _COORDS]
    if bad or n_index == len(coords):
        raise InputError(f"{path}: not a DeepLabCut CSV: the 'coords' row must hold x, y "
                         f"(and likelihood) per body part, got {coords[n_index:n_index + 6]}")
    columns: dict[tuple[str, str, str], int] = {}
    for j in range(n_index, len(coords)):
        if j < len(parts) and (names is None or j < len(names)):
            ind = names[j].strip() if names is not None else UNNAMED
            columns[(ind, parts[j].strip(), coords[j].strip())] = j
    wanted: dict[str, list[int]] = {}
    for ind in dict.fromkeys(i for i, _, _ in columns):
        if (ind, bodypart, "x") in columns and (ind, bodypart, "y") in columns:
            keys = [(ind, bodypart, c) for c in _COORDS if (ind, bodypart, c) in columns]
            wanted[ind] = [columns[k] for k in keys]
    if not wanted:
        raise bodypart_missing(path, bodypart, list(dict.fromkeys(p for _, p, _ in columns)))
    return wanted, n_index


# --------------------------------------------------------------------------- HDF5 (movement)


def _read_hdf5(path: Path, bodypart: str) -> dict[str, Track]:
    kind = _hdf5_kind(path)
    mio = _movement(path)
    try:
        with _read_lock:  # PyTables is not thread-safe; extract validates videos in threads
            if kind == "DeepLabCut":
                ds, named = _dlc_dataset(path, mio)
            else:
                ds = mio.load_dataset(path, source_software=kind)
                named = [str(i) for i in ds["individuals"].values] != ["id_0"]  # movement's name when none
    except InputError:
        raise
    except Exception as exc:  # movement, pandas and PyTables raise many types; chained for --debug
        raise InputError(f"{path}: cannot read this {kind} pose file ({first_line(exc)}); "
                         f"give a complete {kind} output file or its CSV export") from exc
    keypoints = [str(k) for k in ds["keypoints"].values]
    if bodypart not in keypoints:
        raise bodypart_missing(path, bodypart, keypoints)
    position = ds["position"].sel(keypoints=bodypart, space=["x", "y"])
    xy = np.asarray(position.transpose("time", "individuals", "space").values, dtype=np.float64)
    score = ds["confidence"].sel(keypoints=bodypart).transpose("time", "individuals").values
    score = np.asarray(score, dtype=np.float64)
    if kind == "SLEAP":  # user-labelled points have no score: trusted where they have coordinates
        score = np.where(np.isnan(score), 1.0, score)
    names = [str(i) for i in ds["individuals"].values] if named else [UNNAMED]
    return {name: Track(xy[:, j], None if np.isnan(score[:, j]).all() else score[:, j])
            for j, name in enumerate(names)}


def _hdf5_keypoints(path: Path) -> list[str]:
    """The keypoints of an ``.h5``/``.slp`` pose file, as movement reads them."""
    kind = _hdf5_kind(path)
    mio = _movement(path)
    try:
        with _read_lock:
            ds = _dlc_dataset(path, mio)[0] if kind == "DeepLabCut" else mio.load_dataset(
                path, source_software=kind)
    except InputError:
        raise
    except Exception as exc:  # as in _read_hdf5
        raise InputError(f"{path}: cannot read this {kind} pose file ({first_line(exc)}); "
                         f"give a complete {kind} output file or its CSV export") from exc
    return [str(k) for k in ds["keypoints"].values]


def _dlc_dataset(path: Path, mio: Any) -> tuple[Any, bool]:
    """A DeepLabCut ``.h5`` as a movement dataset, and whether it names individuals.

    movement turns the table into an array by reshaping it, which scrambles the points
    unless the columns are every (individual,) body part and coordinate in order; such a
    file (DeepLabCut's unique body parts) is refused rather than read wrong.
    """
    import pandas as pd

    df = pd.read_hdf(path, key="df_with_missing")
    names = list(getattr(df, "columns", pd.Index([])).names)
    if not isinstance(df, pd.DataFrame) or not {"bodyparts", "coords"} <= set(names):
        raise InputError(f"{path}: 'df_with_missing' is not a DeepLabCut table (column levels "
                         f"{names}, expected scorer, bodyparts, coords); give the file "
                         "DeepLabCut wrote")
    levels = [n for n in ("individuals", "bodyparts", "coords") if n in names]
    columns = list(zip(*(df.columns.get_level_values(n) for n in levels), strict=True))
    grid = list(itertools.product(*(dict.fromkeys(v) for v in zip(*columns, strict=True))))
    if columns != grid or ("scorer" in names and df.columns.get_level_values("scorer").nunique() != 1):
        raise InputError(f"{path}: the columns are not one scorer's x, y (and likelihood) for "
                         "every body part of every individual (DeepLabCut's unique body parts, "
                         "or several scorers), which movement cannot read; give the CSV export "
                         "(deeplabcut.analyze_videos_converth5_to_csv)")
    return mio.load_poses.from_dlc_style_df(df, source_software="DeepLabCut"), "individuals" in levels


def _hdf5_kind(path: Path) -> str:
    """``"DeepLabCut"`` or ``"SLEAP"`` from the file's content (DeepLabCut files checked for
    unsafe pickles); InputError for anything else."""
    import h5py

    try:
        with open(path, "rb"):
            pass
        with h5py.File(path, "r") as fh:
            suffix = path.suffix.lower()
            if suffix == ".h5" and "df_with_missing" in fh:
                _refuse_unsafe_pickles(path, fh)
                return "DeepLabCut"
            if suffix == ".h5" and "tracks" in fh:
                return "SLEAP"
            if suffix == ".slp" and "pred_points" in fh and "metadata" in fh:
                return "SLEAP"
            held = ", ".join(list(fh)[:6]) or "nothing"
    except PermissionError as exc:
        raise InputError(f"{path}: cannot read the pose file ({exc.strerror}); fix its "
                         "permissions") from None
    except OSError:
        raise InputError(f"{path}: is not an HDF5 file, or it is damaged; expected a "
                         "DeepLabCut or SLEAP .h5, or a SLEAP .slp pose file") from None
    if path.suffix.lower() == ".slp":
        raise InputError(f"{path}: is not a SLEAP .slp file (no 'pred_points' and 'metadata'; "
                         f"it holds {held}); give the SLEAP labels file")
    raise InputError(f"{path}: is neither a DeepLabCut .h5 (no 'df_with_missing' table) nor a "
                     f"SLEAP analysis .h5 (no 'tracks' dataset); it holds {held}; give the "
                     "pose file DeepLabCut or SLEAP wrote")


class _UnsafePickle(Exception):
    """A pickle names a class or function (``str(exc)`` is its dotted name)."""


class _PlainData(pickle.Unpickler):
    """Loads a pickle of plain data only: any class or function it names is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise _UnsafePickle(f"{module}.{name}")


def _refuse_unsafe_pickles(path: Path, fh: Any) -> None:
    """InputError when a value PyTables would unpickle (an attribute ending in ``.``, a row
    of an object array) names any class or function."""
    import h5py

    objects = [("/", fh)]
    fh.visititems(lambda name, obj: objects.append((name, obj)))
    for name, obj in objects:
        blobs: list[tuple[str, Any]] = []
        for key in obj.attrs:
            try:
                blobs.append((f"attribute {key!r}", obj.attrs[key]))
            except (OSError, TypeError, ValueError):
                raise InputError(f"{path}: attribute {key!r} of {name} cannot be read, so it "
                                 "cannot be checked before pandas unpickles it; export CSV from "
                                 "DeepLabCut instead") from None
        if isinstance(obj, h5py.Dataset) and obj.attrs.get("PSEUDOATOM") == b"object":
            blobs += [(f"row {i}", bytes(row)) for i, row in enumerate(obj[()])]
        for what, value in blobs:
            data = value.encode() if isinstance(value, str) else value
            if not isinstance(data, bytes) or not data.endswith(b"."):
                continue
            try:
                _PlainData(io.BytesIO(data)).load()
            except _UnsafePickle as exc:
                raise InputError(f"{path}: {what} of {name} is a pickle that would load {exc}; "
                                 "pose files may hold only plain data (the reader runs no code "
                                 "from a file); export CSV from DeepLabCut instead") from None
            except Exception:  # not a pickle at all: PyTables then keeps the value as it is
                continue


_lock = threading.Lock()
_read_lock = threading.Lock()
_movement_io: Any = None


def _movement(path: Path) -> Any:
    """``movement.io``, imported on first use, its logging kept out of the output."""
    global _movement_io
    with _lock:
        if _movement_io is None:
            hook = warnings.showwarning
            try:
                import movement.io
                from movement.utils.logging import logger
            except (ImportError, OSError) as exc:  # OSError: movement makes ~/.movement at import
                raise InputError(f"{path}: reading .h5 and .slp pose files needs the 'movement' "
                                 f"package, which cannot be imported ({first_line(exc)}); "
                                 "install it (pip install movement) or give a DeepLabCut "
                                 "CSV") from exc
            finally:
                warnings.showwarning = hook  # movement routes every warning of the process to its log
            logger.remove()  # its stderr and ~/.movement/movement.log handlers
            logger.add(_forward, level="WARNING", format="{message}",
                       filter=lambda record: record["level"].no < 40)  # errors: our one line
            _movement_io = movement.io
    return _movement_io


def _forward(message: Any) -> None:
    """A movement warning, as one of this module's log records."""
    log.info("movement: %s", str(message.record["message"]).strip())
