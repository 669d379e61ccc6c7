"""DeepLabCut pose files: one body part's track, cleaned, as crop centres.

Layouts read
------------
*Analysis CSV* (``analyze_videos(..., save_as_csv=True)``): three header rows whose first
cells are ``scorer``, ``bodyparts`` and ``coords``; then one row per frame, the first
column the frame index (0, 1, 2, ...), then ``x, y, likelihood`` per body part.

*Labelled-data CSV* (``CollectedData_<scorer>.csv``): the same three header rows but only
``x, y`` per body part, and an index of image paths (one column, or three in newer
DeepLabCut versions). Every labelled point counts as valid; empty cells are missing.

Multi-animal files (a fourth header row ``individuals``) are rejected with a message.
DeepLabCut's ``.h5`` files store their column names pickled by pandas; this module never
unpickles, so it asks for the CSV export instead (see :func:`read_dlc`).

Points whose likelihood is below ``min_likelihood`` (or missing) are replaced by linear
interpolation over time; before the first and after the last valid point the nearest
valid value is held.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

_HEADER = ("scorer", "bodyparts", "coords")
_COORDS = ("x", "y", "likelihood")
_INT = re.compile(r"^\s*\d+\s*$")


def read_dlc(path: str | Path, bodypart: str, min_likelihood: float = 0.6) -> np.ndarray:
    """Read one body part's (x, y) track from a DeepLabCut file, low-confidence points filled.

    Parameters
    ----------
    path
        DeepLabCut analysis CSV, labelled-data CSV, or ``.h5`` (see below).
    bodypart
        Name of the body part, e.g. ``"midbody"``.
    min_likelihood
        Points with a likelihood below this (or none) are interpolated over time.

    Returns
    -------
    np.ndarray
        ``(T, 2)`` float64 array of x, y in pixels, one row per frame, without NaN.

    Raises
    ------
    InputError
        The file is missing or not a single-animal DeepLabCut layout, the body part is
        absent, a cell is not a number, or no point reaches ``min_likelihood``. A ``.h5``
        file always raises: its column names can only be read by unpickling, so the
        message asks for the CSV export.
    """
    path = Path(path)
    if not 0.0 <= min_likelihood <= 1.0:
        raise ValueError(f"min_likelihood must be within [0, 1], got {min_likelihood}")
    if not path.exists():
        raise InputError(f"{path}: pose file does not exist; check data.crop.pose")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a DeepLabCut .csv file")
    if path.suffix.lower() in (".h5", ".hdf5"):
        _reject_h5(path)
    xy, likelihood = _read_csv(path, bodypart)
    valid = np.isfinite(xy).all(axis=1)
    if likelihood is not None:
        with np.errstate(invalid="ignore"):
            valid &= likelihood >= min_likelihood
    if not valid.any():
        best = np.nanmax(likelihood) if likelihood is not None and np.isfinite(likelihood).any() else None
        detail = f"the highest likelihood is {best:.3g}" if best is not None else "no point has coordinates"
        raise InputError(f"{path}: no point of {bodypart!r} reaches likelihood {min_likelihood} "
                         f"({detail}); lower data.crop.min_likelihood or choose another body part")
    n_bad = int((~valid).sum())
    if n_bad:
        log.info("%s: %d of %d points of %r below likelihood %s, interpolated",
                 path.name, n_bad, len(valid), bodypart, min_likelihood)
    t = np.arange(len(xy))
    out = np.empty_like(xy)
    for k in range(2):
        out[:, k] = np.interp(t, t[valid], xy[valid, k])
    return out


def write_dlc_csv(path: str | Path, points: dict[str, np.ndarray],
                  scorer: str = "mouse-pipeline") -> None:
    """Write body-part tracks as a DeepLabCut analysis CSV (x, y, likelihood per part).

    Parameters
    ----------
    path
        Output file.
    points
        Body part name -> ``(T, 3)`` array of x, y, likelihood; every part the same T.
        NaN is written as an empty cell, as pandas does.
    scorer
        Written in the ``scorer`` header row.
    """
    names = list(points)
    if not names:
        raise ValueError("points is empty: give at least one body part")
    arrays = [np.asarray(points[n], dtype=float) for n in names]
    for name, arr in zip(names, arrays, strict=True):
        if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] != arrays[0].shape[0]:
            raise ValueError(f"points[{name!r}] must have shape ({arrays[0].shape[0]}, 3), "
                             f"got {arr.shape}")
    table = np.concatenate(arrays, axis=1)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["scorer"] + [scorer] * (3 * len(names)))
        w.writerow(["bodyparts"] + [n for n in names for _ in range(3)])
        w.writerow(["coords"] + list(_COORDS) * len(names))
        for i, row in enumerate(table):
            w.writerow([i] + ["" if np.isnan(v) else f"{v:.4f}" for v in row])


def find_pose_file(folder: str | Path, video_id: str) -> Path:
    """The DeepLabCut file of a video in ``folder``: ``<id>.csv`` or ``<id>DLC*.csv`` (or .h5).

    Raises
    ------
    InputError
        No file, or several, match the video.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: pose folder does not exist; check data.crop.pose")
    found = []
    for ext in (".csv", ".h5"):
        exact = folder / f"{video_id}{ext}"
        found += [exact] if exact.is_file() else sorted(folder.glob(f"{video_id}DLC*{ext}"))
        if found:
            break
    if not found:
        raise InputError(f"{folder}: no pose file for video {video_id!r} (expected "
                         f"{video_id}.csv or {video_id}DLC*.csv); run DeepLabCut on it or "
                         "set data.crop.mode")
    if len(found) > 1:
        raise InputError(f"{folder}: several pose files for video {video_id!r} "
                         f"({', '.join(p.name for p in found)}); keep one")
    return found[0]


def _columns(path: Path, parts: list[str], coords: list[str], bodypart: str) -> tuple[list[int], int, int]:
    """Columns of ``bodypart``'s x, y (and likelihood) in a DeepLabCut header; the number of
    index columns; the number of header cells."""
    n_index = 1
    while n_index < len(coords) and coords[n_index].strip() == "":
        n_index += 1
    bad = [c for c in coords[n_index:] if c.strip() not in _COORDS]
    if bad or n_index == len(coords):
        raise InputError(f"{path}: not a DeepLabCut CSV: the 'coords' row must hold x, y "
                         f"(and likelihood) per body part, got {coords[n_index:n_index + 6]}")
    columns = {(parts[j].strip(), coords[j].strip()): j for j in range(n_index, len(coords))
               if j < len(parts)}
    if (bodypart, "x") not in columns or (bodypart, "y") not in columns:
        present = list(dict.fromkeys(p for p, _ in columns))
        raise InputError(f"{path}: body part {bodypart!r} not found; the file has: "
                         f"{', '.join(present)}; set data.crop.bodypart")
    wanted = [columns[(bodypart, "x")], columns[(bodypart, "y")]]
    if (bodypart, "likelihood") in columns:
        wanted.append(columns[(bodypart, "likelihood")])
    return wanted, n_index, len(coords)


def _read_csv(path: Path, bodypart: str) -> tuple[np.ndarray, np.ndarray | None]:
    """x, y (T, 2) and likelihood (T,) or None of one body part, NaN where a cell is empty."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise InputError(f"{path}: is not a text file; expected a DeepLabCut CSV") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the pose file ({exc.strerror}); fix its "
                         "permissions") from None
    first = [(r[0].strip() if r else "") for r in rows[:4]]
    if len(first) > 1 and first[0] == "scorer" and first[1] == "individuals":
        raise InputError(f"{path}: is a multi-animal DeepLabCut file ('individuals' header "
                         "row); only single-animal files are supported")
    if tuple(first[:3]) != _HEADER:
        raise InputError(f"{path}: not a DeepLabCut CSV: expected the first cells of the first "
                         f"three rows to be 'scorer', 'bodyparts', 'coords', got {first[:3]}")
    wanted, n_index, n_cells = _columns(path, rows[1], rows[2], bodypart)
    has_likelihood = len(wanted) == 3
    body = rows[3:]
    while body and not any(c.strip() for c in body[-1]):
        body.pop()
    if not body:
        raise InputError(f"{path}: has the DeepLabCut header but no data rows")
    values = np.empty((len(body), len(wanted)))
    index_is_int = n_index == 1
    for i, row in enumerate(body):
        line = i + 4
        if len(row) <= max(wanted):
            raise InputError(f"{path}: row {line} has {len(row)} cells, the header has "
                             f"{n_cells}; the file is truncated or malformed")
        index_is_int = index_is_int and bool(_INT.match(row[0]))
        for k, j in enumerate(wanted):
            cell = row[j].strip()
            if cell == "" or cell.lower() == "nan":
                values[i, k] = np.nan
                continue
            try:
                values[i, k] = float(cell)
            except ValueError:
                raise InputError(f"{path}: row {line}: {cell!r} in column {bodypart}/"
                                 f"{'xy'[k] if k < 2 else 'likelihood'} is not a number") from None
    if index_is_int:
        frames = np.array([int(r[0]) for r in body])
        wrong = np.flatnonzero(frames != np.arange(len(body)))
        if wrong.size:
            i = int(wrong[0])
            raise InputError(f"{path}: frame index is not 0, 1, 2, ...: row {i + 4} has "
                             f"{frames[i]}, expected {i}; export the whole video from DeepLabCut")
    return values[:, :2], (values[:, 2] if has_likelihood else None)


def _reject_h5(path: Path) -> None:
    """Explain why a DeepLabCut .h5 cannot be read here, naming the CSV export to use."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            is_dlc = "df_with_missing" in fh
    except OSError:
        raise InputError(f"{path}: is not an HDF5 file; expected a DeepLabCut .csv or .h5 "
                         "pose file") from None
    if not is_dlc:
        raise InputError(f"{path}: is not a DeepLabCut .h5 file (no 'df_with_missing' table); "
                         "give the DeepLabCut CSV instead")
    raise InputError(f"{path}: DeepLabCut .h5 files keep their column names pickled, which "
                     "this reader does not load; export CSV with deeplabcut.analyze_videos(..., "
                     "save_as_csv=True) or deeplabcut.analyze_videos_converth5_to_csv(folder)")
