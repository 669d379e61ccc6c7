"""DeepLabCut pose files -> per-frame crop centres.

DeepLabCut writes CSVs with three header rows (``scorer``, ``bodyparts``, ``coords``) and
the frame index (or an image path) as the first column; its analysis output has coords
``x, y, likelihood`` per body part, its labelled-data files only ``x, y``. Points below
the likelihood threshold (or missing) are replaced by linear interpolation in time, with
the nearest valid value at the ends. DeepLabCut's ``.h5`` output is a pandas table whose
column names are stored pickled; it is not unpickled here (see :func:`read_dlc`).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)


def find_pose_file(folder: str | Path, stem: str) -> Path:
    """The DeepLabCut file of a video: ``<folder>/<stem>*.csv`` (or ``.h5``), exactly one.

    DeepLabCut appends its scorer to the video name (``m3v1DLC_resnet50_...csv``), so files
    are matched by prefix; an exact ``<stem>.csv`` wins over longer names.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: pose folder does not exist; set data.crop.pose")
    for suffix in (".csv", ".h5"):
        exact = folder / f"{stem}{suffix}"
        if exact.is_file():
            return exact
    matches = sorted(p for p in folder.iterdir()
                     if p.is_file() and p.name.startswith(stem) and p.suffix in (".csv", ".h5")
                     and p.name[len(stem):len(stem) + 3] == "DLC")
    csvs = [p for p in matches if p.suffix == ".csv"]
    chosen = csvs or matches
    if not chosen:
        raise InputError(f"{folder}: no DeepLabCut file for video {stem!r} (expected {stem}.csv or "
                         f"{stem}DLC_....csv)")
    if len(chosen) > 1:
        raise InputError(f"{folder}: several DeepLabCut files for video {stem!r}: "
                         f"{', '.join(p.name for p in chosen)}; keep one")
    return chosen[0]


def read_dlc(path: str | Path, bodypart: str, min_likelihood: float = 0.6) -> np.ndarray:
    """Per-frame (x, y) of one body part, low-likelihood points interpolated.

    Parameters
    ----------
    path
        DeepLabCut CSV (analysis output or labelled data).
    bodypart
        Body part name, e.g. ``midbody``.
    min_likelihood
        Points below this likelihood are treated as missing.

    Returns
    -------
    numpy.ndarray
        ``(n_frames, 2)`` float64.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pose file does not exist")
    if path.suffix.lower() == ".h5":
        raise InputError(f"{path}: DeepLabCut .h5 files store their column names pickled, which "
                         "this tool does not unpickle; export CSV with DeepLabCut's "
                         "analyze_videos(..., save_as_csv=True) and point data.crop.pose at it")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read pose file ({exc})") from None
    if len(rows) < 4 or [r[0].strip().lower() if r else "" for r in rows[:3]] != ["scorer", "bodyparts", "coords"]:
        if len(rows) >= 4 and rows[1] and rows[1][0].strip().lower() == "individuals":
            raise InputError(f"{path}: multi-animal DeepLabCut file (has an 'individuals' row); "
                             "only single-animal files are supported")
        raise InputError(f"{path}: not a DeepLabCut CSV: expected three header rows starting "
                         "with scorer, bodyparts, coords")
    parts = [c.strip() for c in rows[1]]
    coords = [c.strip() for c in rows[2]]
    cols = {coords[i]: i for i in range(1, len(parts)) if parts[i] == bodypart}
    if "x" not in cols or "y" not in cols:
        present = sorted({p for p in parts[1:] if p})
        raise InputError(f"{path}: no body part {bodypart!r}; present: {', '.join(present)} "
                         "(set data.crop.bodypart)")
    data = rows[3:]
    xy = np.full((len(data), 2), np.nan)
    like = np.ones(len(data))
    for i, row in enumerate(data):
        if not row or all(not c.strip() for c in row):
            raise InputError(f"{path}: line {i + 4} is empty")
        try:
            for j, key in enumerate(("x", "y")):
                cell = row[cols[key]].strip() if cols[key] < len(row) else ""
                xy[i, j] = float(cell) if cell else np.nan
            if "likelihood" in cols:
                cell = row[cols["likelihood"]].strip() if cols["likelihood"] < len(row) else ""
                like[i] = float(cell) if cell else np.nan
        except ValueError:
            raise InputError(f"{path}: line {i + 4}: non-numeric value for {bodypart!r}") from None
    valid = np.isfinite(xy).all(axis=1) & (np.nan_to_num(like, nan=-1.0) >= min_likelihood)
    if not valid.any():
        raise InputError(f"{path}: every {bodypart!r} point is below likelihood {min_likelihood} "
                         "(data.crop.min_likelihood) or missing; check the pose file")
    if not valid.all():
        log.info("%s: %d of %d %s points below likelihood %.2f interpolated", path.name,
                 int((~valid).sum()), len(valid), bodypart, min_likelihood)
    t = np.arange(len(data))
    out = np.empty_like(xy)
    for j in range(2):
        out[:, j] = np.interp(t, t[valid], xy[valid, j])
    return out


def write_dlc_csv(path: str | Path, points: dict[str, np.ndarray], scorer: str = "mouse-pipeline") -> None:
    """Write DeepLabCut's analysis CSV layout: ``points[name]`` is (T, 3) x, y, likelihood."""
    names = list(points)
    n = len(next(iter(points.values())))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["scorer"] + [scorer] * 3 * len(names))
        w.writerow(["bodyparts"] + [p for p in names for _ in range(3)])
        w.writerow(["coords"] + ["x", "y", "likelihood"] * len(names))
        for i in range(n):
            w.writerow([i] + [f"{v:.3f}" for p in names for v in points[p][i]])
