"""Reading another tool's per-frame features: one ``.npy``, ``.h5`` or ``.csv`` file per video.

Each reader returns the file's features as a ``(n_rows, dim)`` float32 array, row ``i``
being frame ``i`` of the decoded video, or raises one-line
:class:`~mouse_pipeline.errors.InputError` naming the file:

``npy``
    A NumPy array of integers or floats (never a pickled object array), 2-D
    ``(frames, features)``; a 1-D array is one feature per frame.
``h5``
    The dataset named by ``dataset`` (``--h5-dataset``), or the file's only dataset of
    1 or 2 dimensions (several: name one).
``csv``
    Comma-separated numbers, one row per frame, optionally under a header row (a first
    row holding any cell that is not a number). After a header, a first column named
    ``""``, ``frame`` or ``index`` that counts 0, 1, 2, ... is the frame index (as
    pandas' ``to_csv`` writes it) and is dropped, with a log line; every other column is a
    feature.

Every reader refuses what cannot be features: another dimensionality, no row, no
column, complex or non-numeric values, more than
:data:`~mouse_pipeline.config_limits.MAX_EMBEDDING_DIM` features (the memory checks
count on it), and rows holding NaN or infinite values (also values beyond float32's
range: they become infinite when stored), naming the first such row.
"""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import h5py
import numpy as np

from ..config_limits import MAX_EMBEDDING_DIM
from ..errors import InputError
from ..fileio import first_line

log = logging.getLogger(__name__)

#: File suffixes of each format (lower case).
SUFFIXES = {"npy": (".npy",), "h5": (".h5", ".hdf5"), "csv": (".csv",)}
FORMATS = tuple(SUFFIXES)
INDEX_COLUMNS = ("", "frame", "index")


def format_of(path: Path) -> str | None:
    """The format a file's suffix names, or None when it is not a feature file."""
    suffix = path.suffix.lower()
    return next((fmt for fmt, suffixes in SUFFIXES.items() if suffix in suffixes), None)


def read_features(path: Path, fmt: str, dataset: str | None = None) -> np.ndarray:
    """One video's features from a file, checked (see the module notes).

    Parameters
    ----------
    path
        The feature file.
    fmt
        ``npy``, ``h5`` or ``csv``.
    dataset
        For ``h5``: the dataset to read (None: the file's only one).

    Returns
    -------
    np.ndarray
        ``(n_rows, dim)`` float32, every value finite.

    Raises
    ------
    InputError
        Unreadable, not numeric, of another shape, or holding NaN or infinities.
    """
    try:
        if fmt == "npy":
            raw = _read_npy(path)
        elif fmt == "h5":
            raw = _read_h5(path, dataset)
        elif fmt == "csv":
            raw = _read_csv(path)
        else:
            raise ValueError(f"unknown feature format {fmt!r}; expected one of {FORMATS}")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the feature file ({exc.strerror or first_line(exc)}); "
                         "check it exists and is readable") from None
    return checked(path, raw)


def checked(path: Path, raw: np.ndarray) -> np.ndarray:
    """``raw`` as a ``(n_rows, dim)`` float32 array, or InputError saying what is wrong."""
    if raw.dtype.kind not in "iuf":
        raise InputError(f"{path}: values of type {raw.dtype} where numbers (integers or floats) were "
                         "expected; export the features as numbers")
    if raw.ndim == 1:
        raw = raw[:, None]
    if raw.ndim != 2:
        raise InputError(f"{path}: an array of shape {raw.shape} where 2 dimensions (frames x features) "
                         "were expected")
    if raw.shape[0] == 0 or raw.shape[1] == 0:
        raise InputError(f"{path}: an empty array of shape {raw.shape}; expected one row per frame and "
                         "at least one feature")
    if raw.shape[1] > MAX_EMBEDDING_DIM:
        raise InputError(f"{path}: {raw.shape[1]} features per frame, more than the {MAX_EMBEDDING_DIM} "
                         "stage 2 allows; reduce them (e.g. PCA) before importing")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(raw, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        raise InputError(f"{path}: row {int(bad[0])} (frame {int(bad[0])}, counting from 0) holds NaN or "
                         f"infinite values (or values beyond float32's range; rows holding them: {bad.size} of {len(out)}); "
                         "fix them in the tool that made the features")
    return out


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays, a file that is not .npy
        raise InputError(f"{path}: not a NumPy array of numbers ({first_line(exc)}); save it with "
                         "numpy.save from a numeric array") from None


def _datasets(f: h5py.File) -> list[str]:
    found: list[str] = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def _read_h5(path: Path, dataset: str | None) -> np.ndarray:
    try:
        with h5py.File(path, "r") as f:
            if dataset is not None:
                obj = f.get(dataset)
                if not isinstance(obj, h5py.Dataset):
                    names = ", ".join(_datasets(f)[:8]) or "none"
                    raise InputError(f"{path}: no dataset {dataset!r} (datasets: {names}); check "
                                     "--h5-dataset")
            else:
                names = [n for n in _datasets(f) if f[n].ndim in (1, 2)]
                if len(names) != 1:
                    listed = ", ".join(names[:8]) or "none"
                    raise InputError(f"{path}: {len(names)} datasets of 1 or 2 dimensions ({listed}); "
                                     "name the one to import with --h5-dataset")
                obj = f[names[0]]
            return obj[()]
    except (KeyError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: unreadable HDF5 file ({first_line(exc)})") from None
    except OSError as exc:
        if getattr(exc, "errno", None) is not None:
            raise
        raise InputError(f"{path}: not a readable HDF5 file ({first_line(exc)})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> np.ndarray:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            first = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (UTF-8); export the features as a CSV of "
                         "numbers") from None
    if first is None:
        raise InputError(f"{path}: empty CSV file; expected one row of numbers per frame")
    header = None if all(_is_number(c) for c in first) else [c.strip() for c in first]
    try:
        with warnings.catch_warnings():  # no data rows: refused below, with the file's name
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(path, delimiter=",", skiprows=0 if header is None else 1, ndmin=2,
                                dtype=np.float64, encoding="utf-8")
    except ValueError as exc:
        raise InputError(f"{path}: not a CSV of numbers ({first_line(exc)}); every cell after the "
                         "header must be a number") from None
    if values.size == 0:
        raise InputError(f"{path}: no row of numbers; expected one row per frame")
    if header is not None and values.shape[1] != len(header):
        raise InputError(f"{path}: a header of {len(header)} columns but rows of {values.shape[1]}")
    if (header is not None and header[0].lower() in INDEX_COLUMNS and values.shape[1] > 1
            and np.array_equal(values[:, 0], np.arange(values.shape[0]))):
        log.info("%s: first column %r counts the frames: read as the frame index, not as a feature",
                 path, header[0])
        values = values[:, 1:]
    return values
