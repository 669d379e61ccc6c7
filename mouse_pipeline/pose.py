"""Pose files -> crop centres: one body part's track, cleaned, checked against the frame.

Formats (read in :mod:`mouse_pipeline.pose_formats`)
----------------------------------------------------
DeepLabCut analysis and labelled-data CSV, LightningPose CSV (this project's own parser);
DeepLabCut ``.h5``, SLEAP analysis ``.h5`` and SLEAP ``.slp`` (through ``movement``,
imported only when such a file is read). Multi-animal files (DeepLabCut with an
``individuals`` header row, SLEAP with several tracks) give the track of the individual
chosen with ``individual``; with several and none chosen, reading is refused with their
names.

Cleaning
--------
Points whose likelihood is below ``min_likelihood`` (or missing) are replaced by linear
interpolation over time; before the first and after the last valid point the nearest
valid value is held. A file without likelihoods (labelled data) trusts every point that
has coordinates.

Checks
------
:func:`check_inside` compares the track with the video's frame: a pose file of another
video or of another resolution puts the crop outside the picture (black crops).

Finding files
-------------
:func:`find_pose_file` matches a video stem: ``<id>.csv``, ``<id>DLC*.csv``, ``<id>.h5``,
``<id>DLC*.h5``, ``<id>[.<video ext>][.predictions].analysis.h5``, ``<id>.slp``,
``<id>[.<video ext>].predictions.slp``, in that order of extensions (a CSV export is
preferred to its ``.h5``).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import numpy as np

from .errors import InputError
from .pose_formats import UNNAMED, Track, read_tracks, read_tracks_of

log = logging.getLogger(__name__)

_COORDS = ("x", "y", "likelihood")
_VIDEO_EXT = r"(\.[A-Za-z][A-Za-z0-9]{1,3})?"


def read_pose(path: str | Path, bodypart: str, min_likelihood: float = 0.6, *,
              individual: str | None = None) -> np.ndarray:
    """Read one body part's (x, y) track from a pose file, low-confidence points filled.

    Parameters
    ----------
    path
        DeepLabCut analysis or labelled-data CSV, LightningPose CSV, DeepLabCut ``.h5``,
        SLEAP analysis ``.h5`` or SLEAP ``.slp``.
    bodypart
        Name of the body part (SLEAP: node), e.g. ``"midbody"``.
    min_likelihood
        Points with a likelihood below this (or none) are interpolated over time.
    individual
        In a multi-animal file, the individual (SLEAP: track) to follow; needed when the
        file has several (``data.crop.individual``).

    Returns
    -------
    np.ndarray
        ``(T, 2)`` float64 array of x, y in pixels, one row per frame, without NaN.

    Raises
    ------
    InputError
        The file is missing, unreadable or of no known layout; the body part or the
        individual is absent; several individuals and none chosen; a cell is not a number;
        or no point reaches ``min_likelihood``.
    """
    path = Path(path)
    if not 0.0 <= min_likelihood <= 1.0:
        raise ValueError(f"min_likelihood must be within [0, 1], got {min_likelihood}")
    if not path.exists():
        raise InputError(f"{path}: pose file does not exist; check data.crop.pose")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a pose file (.csv, .h5 or .slp)")
    tracks = read_tracks(path, bodypart)
    name = _choose_individual(path, bodypart, list(tracks), individual)
    what = repr(bodypart) + (f" (individual {name!r})" if name != UNNAMED else "")
    return _fill(path, tracks[name], what, min_likelihood)


def read_track(path: str | Path, bodypart: str, *, individual: str | None = None) -> Track:
    """One body part's points as the file holds them (NaN where missing, nothing filled).

    The individual is chosen as in :func:`read_pose`. Raises InputError likewise.
    """
    return read_parts(path, [bodypart], individual=individual)[bodypart]


def read_parts(path: str | Path, bodyparts: list[str], *,
               individual: str | None = None) -> dict[str, Track]:
    """:func:`read_track` of several body parts, the file read once (CSV)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pose file does not exist or is not a file")
    out = {}
    for part, tracks in read_tracks_of(path, list(bodyparts)).items():
        out[part] = tracks[_choose_individual(path, part, list(tracks), individual)]
    return out


read_dlc = read_pose
"""The former name of :func:`read_pose`, which callers still use."""


def check_inside(centres: np.ndarray, width: int, height: int, path: str | Path, *,
                 video: str | Path | None = None, max_outside: float = 0.5) -> int:
    """Warn when crop centres fall outside the video's frame; refuse when most do.

    Parameters
    ----------
    centres
        ``(T, 2)`` x, y per frame, as :func:`read_pose` returns them.
    width, height
        The video's frame size in pixels.
    path
        The pose file, named in the message.
    video
        The video, named in the message when given.
    max_outside
        The largest fraction of frames outside that is only warned about.

    Returns
    -------
    int
        The number of frames whose centre is outside ``[0, width) x [0, height)``.

    Raises
    ------
    InputError
        More than ``max_outside`` of the frames are outside: the pose file belongs to
        another video or to another resolution.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    outside = (c[:, 0] < 0) | (c[:, 0] >= width) | (c[:, 1] < 0) | (c[:, 1] >= height)
    n = int(outside.sum())
    if n == 0:
        return 0
    x, y = c[:, 0], c[:, 1]
    frame = f"the {width}x{height} frame" + (f" of {video}" if video is not None else "")
    what = (f"{path}: {n} of {len(c)} frames have the pose point outside {frame} (first: frame "
            f"{int(np.flatnonzero(outside)[0])}; the track spans x {x.min():.0f} to {x.max():.0f}, "
            f"y {y.min():.0f} to {y.max():.0f})")
    hint = "the pose file may belong to another video, or to another resolution of this video"
    if n > max_outside * len(c):
        raise InputError(f"{what}; {hint}: give the pose file made from this video")
    log.warning("%s; their crops are partly black padding, not the mouse; %s", what, hint)
    return n


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


def find_pose_file(folder: str | Path, video_id: str,
                   what: str = "data.crop.pose", fix: str = "or set data.crop.mode") -> Path:
    """The pose file of a video in ``folder``, matched by its stem (see the module docstring).

    ``what`` names the config key of the folder and ``fix`` ends the advice of a message.

    Raises
    ------
    InputError
        No file, or several of one extension, match the video.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: pose folder does not exist; check {what}")
    v = re.escape(video_id)
    patterns = ((".csv", [rf"{v}DLC.*\.csv"]),
                (".h5", [rf"{v}DLC.*\.h5", rf"{v}{_VIDEO_EXT}(\.predictions)?\.analysis\.h5"]),
                (".slp", [rf"{v}{_VIDEO_EXT}\.predictions\.slp"]))
    names = sorted(os.listdir(folder))
    found: list[Path] = []
    for ext, others in patterns:
        exact = folder / f"{video_id}{ext}"
        found = [exact] if exact.is_file() else [
            folder / n for n in names
            if any(re.fullmatch(p, n) for p in others) and (folder / n).is_file()]
        if found:
            break
    if not found:
        raise InputError(f"{folder}: no pose file for video {video_id!r} (expected "
                         f"{video_id}.csv or {video_id}DLC*.csv, .h5 likewise, "
                         f"{video_id}.analysis.h5 or {video_id}.slp); run DeepLabCut or SLEAP "
                         f"on it {fix}")
    if len(found) > 1:
        raise InputError(f"{folder}: several pose files for video {video_id!r} "
                         f"({', '.join(p.name for p in found)}); keep one")
    return found[0]


def _choose_individual(path: Path, bodypart: str, names: list[str], individual: str | None) -> str:
    """The individual to follow among ``names`` (:data:`UNNAMED` alone: a single-animal file)."""
    if individual is None:
        if len(names) == 1:
            return names[0]
        raise InputError(f"{path}: has {len(names)} individuals with {bodypart!r} "
                         f"({', '.join(names)}); choose one with data.crop.individual")
    if individual in names:
        return individual
    if names == [UNNAMED]:
        raise InputError(f"{path}: is a single-animal file (no individuals), but "
                         f"data.crop.individual is {individual!r}; remove that setting")
    raise InputError(f"{path}: no individual {individual!r} with {bodypart!r}; the file has: "
                     f"{', '.join(names)}; set data.crop.individual")


def _fill(path: Path, track: Track, what: str, min_likelihood: float) -> np.ndarray:
    """The track without NaN: points below ``min_likelihood`` or missing, interpolated."""
    xy, likelihood = track.xy, track.likelihood
    valid = np.isfinite(xy).all(axis=1)
    if likelihood is not None:
        with np.errstate(invalid="ignore"):
            valid &= likelihood >= min_likelihood
    if not valid.any():
        best = np.nanmax(likelihood) if likelihood is not None and np.isfinite(likelihood).any() else None
        detail = f"the highest likelihood is {best:.3g}" if best is not None else "no point has coordinates"
        raise InputError(f"{path}: no point of {what} reaches likelihood {min_likelihood} "
                         f"({detail}); lower data.crop.min_likelihood or choose another body part")
    n_bad = int((~valid).sum())
    if n_bad:
        log.info("%s: %d of %d points of %s below likelihood %s, interpolated",
                 path.name, n_bad, len(valid), what, min_likelihood)
    t = np.arange(len(xy))
    out = np.empty_like(xy)
    for k in range(2):
        out[:, k] = np.interp(t, t[valid], xy[valid, k])
    return out
