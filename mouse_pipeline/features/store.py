"""The feature cache: one HDF5 file per (backbone, video). This module is its contract.

Layout
------
``<cache>/<backbone>/<video_id>.h5``, where ``video_id`` is the video's file stem passed
through :func:`sanitize_id` (only ``A-Z a-z 0-9 . _ -``; anything else becomes ``_``), so
no id can name a file outside its backbone folder. ``<backbone>`` is a stream name: a
backbone, or a backbone's motion stream ``<backbone>+motion`` (:mod:`.motion`; the folder
name keeps its ``+``).

Content
-------
Dataset ``embeddings``: shape ``(n_frames, dim)``, dtype ``float32`` or ``float16``,
chunked along frames (``(min(n_frames, 256), dim)``), row ``i`` is frame ``i`` of the
decoded video (after cropping and resizing). Attributes:

==================  ================================================================
backbone            registry name, e.g. ``resnet50v2``
weights             ``imagenet``, ``random`` or ``sha256:<hex>`` of a weights file
input_size          side of the square backbone input, pixels
crop                JSON (sorted keys) of the crop *settings*, e.g.
                    ``{"mode": "pose", "bodypart": "midbody", "min_likelihood": 0.6,
                    "size": 160}``; the same for every video of one configuration
pose_file           name of the DeepLabCut file the crop centres came from ("" if none)
pose_sha256         sha256 of that whole file ("" if none)
dtype               storage dtype of ``embeddings``
precision           compute precision of the backbone (float32, bfloat16, float16)
motion              motion streams only: JSON (sorted keys) of the motion method and its
                    parameters, e.g. ``{"flow_scale":8.0,"method":"dis","preset":"fast"}``
video_path          absolute path of the video when it was extracted
video_size          the video's size in bytes           } the video's fingerprint
video_mtime_ns      its modification time, ns           } (``video.video_fingerprint``)
video_sha256        hash of its first and last MiB      }
fps                 the video's frame rate as recorded in its container
n_frames, dim       shape of ``embeddings`` (n_frames is the true decoded count)
package_version     ``mouse_pipeline.__version__`` of the writer
created             ISO 8601 time (UTC) the file was completed
==================  ================================================================

Extraction may add informative attributes (e.g. ``extract_frames_per_s``). The ``pose``
stream (pose features, no CNN) keeps this contract under ``<cache>/pose/`` and adds its
settings, body parts and column names (:mod:`mouse_pipeline.features.pose_stream`).

Features not computed by a backbone (``mouse-pipeline cache import``,
:mod:`mouse_pipeline.features.importing`) keep the same layout and dataset, under a
stream name of the user's choosing (never a registry backbone's name), and record where
they came from. These names are generic, for any stream made from a file:

==================  ================================================================
origin              ``import`` (:data:`ORIGIN_IMPORT`) for imported features; absent
                    from files extracted by a backbone
tool                free text naming what made the features (``--tool``)
source              absolute path of the file the features were read from
source_sha256       sha256 of that whole file
source_format       ``npy``, ``h5`` or ``csv``
source_dataset      the HDF5 dataset named (``""``: the file's only one, or not HDF5)
created             also the import time
==================  ================================================================

An imported file records ``weights`` ``imported``, ``input_size`` 0 and empty ``crop``,
``precision``, ``pose_file`` and ``pose_sha256``; the video's fingerprint, ``fps``,
``n_frames`` and ``dim`` as an extracted file does.

Freshness
---------
A file is *fresh* for a video and settings when every key of :data:`PROVENANCE_KEYS`
(and of :data:`STREAM_KEYS` that a file made now would record) equals what they would
record now (:func:`expected_attrs`, :func:`is_fresh`): same
backbone, weights, input size, crop settings, pose file content, storage dtype and
precision, motion settings (motion streams), and the same video size, mtime and content
hash. Anything else is stale.
For a file made from a source file, the keys of :data:`SOURCE_FRESHNESS_KEYS` are
compared too when the expected attributes hold them (the source's content, and the HDF5
dataset read from it).

Writing
-------
Files are written by :class:`~mouse_pipeline.features.writer.CacheWriter` (importable
from here too): under a temporary name that never ends in ``.h5``, renamed into place
when complete, so a file with the final name is always whole and a ``*.h5`` glob never
sees a partial file. See :mod:`mouse_pipeline.features.writer` for the temporary names,
the clean-up of killed writers' leftovers and what a full disk does.

This module imports nothing heavy (h5py and NumPy only).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import CacheError, InputError
from ..fileio import first_line

log = logging.getLogger(__name__)

DATASET = "embeddings"
DTYPES = ("float32", "float16")
CHUNK_FRAMES = 256
FINGERPRINT_KEYS = ("video_size", "video_mtime_ns", "video_sha256")
# Attributes that must equal the current settings and video for a file to be fresh.
PROVENANCE_KEYS = ("backbone", "weights", "input_size", "crop", "pose_sha256", "dtype",
                   "precision") + FINGERPRINT_KEYS
# Provenance that only some streams record (motion streams: ``motion``); compared like
# PROVENANCE_KEYS when a file made now would record it, never required of a writer.
STREAM_KEYS = ("motion",)
# Compared too when expected (features made from a source file: cache import).
SOURCE_FRESHNESS_KEYS = ("source_sha256", "source_dataset")
ORIGIN_IMPORT = "import"
# Attributes a writer must be given (it adds n_frames, dim, dtype, package_version, created).
REQUIRED_ATTRS = tuple(k for k in PROVENANCE_KEYS if k != "dtype") + ("pose_file", "video_path", "fps")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_UNSAFE_STREAM = re.compile(r"[^A-Za-z0-9._+-]")  # a stream name may hold '+' (resnet50v2+motion)
# what moved to the writer module and is still importable from here
_WRITER_NAMES = ("CacheWriter", "remove_stale_temps")


def sanitize_id(stem: str) -> str:
    """A video id that is safe as a file name inside the cache.

    Parameters
    ----------
    stem
        Usually the video's file stem.

    Returns
    -------
    str
        ``stem`` with every character outside ``A-Z a-z 0-9 . _ -`` replaced by ``_``.

    Raises
    ------
    InputError
        The result is empty, ``.`` or ``..`` (it would name a folder, not a file).
    """
    vid = _UNSAFE.sub("_", str(stem))
    if vid in ("", ".", ".."):
        raise InputError(f"{stem!r} cannot be a video id (empty, '.' or '..'); rename the video")
    return vid


def sanitize_stream(name: str) -> str:
    """A stream (backbone) name that is safe as a folder name: :func:`sanitize_id`, keeping ``+``."""
    folder = _UNSAFE_STREAM.sub("_", str(name))
    if folder in ("", ".", ".."):
        raise InputError(f"{name!r} cannot be a backbone or stream name (empty, '.' or '..')")
    return folder


def cache_path(cache_root: str | Path, backbone: str, video_id: str) -> Path:
    """``<cache_root>/<backbone>/<video_id>.h5`` (stream name and id sanitised)."""
    return Path(cache_root) / sanitize_stream(backbone) / f"{sanitize_id(video_id)}.h5"


def crop_json(settings: dict[str, Any]) -> str:
    """The canonical JSON text of crop settings, as stored in the ``crop`` attribute."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def expected_attrs(*, backbone: str, weights: str, input_size: int, crop: str | dict[str, Any],
                   dtype: str, precision: str, video_path: str | Path, fingerprint: dict[str, Any],
                   fps: float | None = None, pose_file: str = "", pose_sha256: str = "",
                   motion: str | None = None) -> dict[str, Any]:
    """The attributes a cache file made now would carry (provenance and identity).

    Parameters
    ----------
    backbone, weights, input_size
        Backbone name, weights identity (``imagenet``, ``random``, ``sha256:...``), input side.
    crop
        Crop settings (dict) or their JSON text (:func:`crop_json`).
    dtype, precision
        Storage dtype and compute precision.
    video_path, fingerprint
        The video and its ``video.video_fingerprint`` (size, mtime_ns, sha256).
    fps
        The video's frame rate (not part of freshness; None when not probed yet).
    pose_file, pose_sha256
        Name and full-content sha256 of the pose file of a pose crop ("" otherwise).
    motion
        A motion stream's settings (:meth:`.motion.MotionSettings.to_json`); None for
        other streams, whose files record no ``motion``.

    Returns
    -------
    dict
        Keys of :data:`PROVENANCE_KEYS` (and ``motion`` when given) plus ``video_path``,
        ``pose_file`` and ``fps``.
    """
    attrs: dict[str, Any] = {
        "backbone": str(backbone), "weights": str(weights), "input_size": int(input_size),
        "crop": crop if isinstance(crop, str) else crop_json(crop),
        "pose_file": str(pose_file), "pose_sha256": str(pose_sha256),
        "dtype": str(dtype), "precision": str(precision), "video_path": str(video_path),
        "video_size": int(fingerprint["size"]), "video_mtime_ns": int(fingerprint["mtime_ns"]),
        "video_sha256": str(fingerprint["sha256"]),
    }
    if fps is not None:
        attrs["fps"] = float(fps)
    if motion is not None:
        attrs["motion"] = str(motion)
    return attrs


def is_imported(attrs: dict[str, Any]) -> bool:
    """Whether a cache file's attributes are those of imported features (``cache import``)."""
    return attrs.get("origin") == ORIGIN_IMPORT


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _unreadable(path: Path | str, exc: BaseException) -> CacheError:
    return CacheError(f"{path}: unreadable cache file ({first_line(exc)}); delete it or re-run extract "
                      "with --overwrite")


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The attributes of a cache file as plain Python values.

    Raises
    ------
    CacheError
        Missing, or not a readable HDF5 file.
    """
    path = Path(path)
    if not path.is_file():
        raise CacheError(f"{path}: no such cache file; run `mouse-pipeline extract` first")
    try:
        with h5py.File(path, "r") as f:
            return {k: _plain(v) for k, v in f.attrs.items()}
    except (OSError, KeyError, ValueError) as exc:
        raise _unreadable(path, exc) from None


def read_embeddings(path: str | Path, expected_dim: int | None = None,
                    expected_backbone: str | None = None) -> np.ndarray:
    """The embeddings of a cache file, checked.

    Parameters
    ----------
    path
        Cache file.
    expected_dim, expected_backbone
        When given, the file must hold embeddings of this size / backbone.

    Returns
    -------
    np.ndarray
        ``(n_frames, dim)`` in the stored dtype (float32 or float16).

    Raises
    ------
    CacheError
        Missing, unreadable, not a cache file, inconsistent with its attributes, or not
        what was expected; the message names the file and says to re-run extract.
    """
    path = Path(path)
    if not path.is_file():
        raise CacheError(f"{path}: no such cache file; run `mouse-pipeline extract` first")
    try:
        with h5py.File(path, "r") as f:
            if DATASET not in f or not isinstance(f[DATASET], h5py.Dataset):
                raise CacheError(f"{path}: no {DATASET!r} dataset, not a mouse-pipeline cache file; "
                                 "delete it or re-run extract with --overwrite")
            backbone = _plain(f.attrs.get("backbone"))
            if expected_backbone is not None and backbone != expected_backbone:
                raise CacheError(f"{path}: holds {backbone!r} embeddings where {expected_backbone!r} "
                                 "was expected; re-run extract with --overwrite")
            n_frames = _plain(f.attrs.get("n_frames"))
            emb = f[DATASET][()]
    except (OSError, KeyError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if emb.ndim != 2 or emb.shape[0] != n_frames:
        raise CacheError(f"{path}: embeddings of shape {emb.shape} but n_frames {n_frames}; the "
                         "file is damaged: re-run extract with --overwrite")
    if expected_dim is not None and emb.shape[1] != expected_dim:
        raise CacheError(f"{path}: embeddings have {emb.shape[1]} dimensions where {expected_dim} "
                         "were expected; re-run extract with --overwrite")
    return emb


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_fresh(path: str | Path, expected: dict[str, Any]) -> tuple[bool, str]:
    """Whether a cache file still matches the video and settings, and why not.

    Parameters
    ----------
    path
        Cache file.
    expected
        What a file made now would record (:func:`expected_attrs`); keys of
        :data:`PROVENANCE_KEYS`, :data:`STREAM_KEYS` and :data:`SOURCE_FRESHNESS_KEYS` present here
        are compared.

    Returns
    -------
    tuple of (bool, str)
        ``(True, "up to date")``, or False and the reason (``not cached``,
        ``unreadable: ...``, ``incomplete ...``, ``video changed (...)``, ``<key> changed (...)``).
    """
    path = Path(path)
    if not path.is_file():
        return False, "not cached"
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            rows = f[DATASET].shape[0] if isinstance(f.get(DATASET), h5py.Dataset) else None
    except (OSError, KeyError, ValueError) as exc:
        return False, f"unreadable: {first_line(exc)}"
    if rows is None or rows != attrs.get("n_frames"):
        return False, f"incomplete ({rows} rows, n_frames {attrs.get('n_frames')})"
    for key in PROVENANCE_KEYS + STREAM_KEYS + SOURCE_FRESHNESS_KEYS:
        if key in expected and attrs.get(key) != expected[key]:
            what = f"video changed ({key[6:]} " if key in FINGERPRINT_KEYS else f"{key} changed ("
            return False, f"{what}{_short(attrs.get(key))} -> {_short(expected[key])})"
    return True, "up to date"


@dataclass(frozen=True)
class CacheEntry:
    """One cache file, as listed by :func:`list_cache`.

    ``error`` is None for a readable file; otherwise the reason it could not be read
    (and ``n_frames``/``dim`` are 0, ``dtype`` is ``?``, ``attrs`` is empty).
    """

    video_id: str
    backbone: str
    n_frames: int
    dim: int
    dtype: str
    bytes: int
    path: Path
    attrs: dict[str, Any]
    error: str | None = None


def list_cache(cache_root: str | Path) -> list[CacheEntry]:
    """Every cache file (``<cache_root>/*/*.h5``) sorted by backbone and video id.

    Temporary files are never listed; unreadable files are, with ``error`` set.
    """
    out = []
    for path in sorted(Path(cache_root).glob("*/*.h5"), key=lambda p: (p.parent.name, p.stem)):
        if not path.is_file():
            continue
        size = path.stat().st_size
        try:
            attrs = read_attrs(path)
        except CacheError as exc:
            out.append(CacheEntry(path.stem, path.parent.name, 0, 0, "?", size, path, {}, str(exc)))
            continue
        out.append(CacheEntry(path.stem, path.parent.name, int(attrs.get("n_frames", 0)),
                              int(attrs.get("dim", 0)), str(attrs.get("dtype", "?")), size, path, attrs))
    return out


def __getattr__(name: str) -> Any:
    """The writer's names (:data:`_WRITER_NAMES`), importable from here as before the split.

    Looked up on first use: the writer module imports this one for the contract.
    """
    if name in _WRITER_NAMES:
        from . import writer

        return getattr(writer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
