"""The feature cache: one HDF5 file per (backbone, video).

Layout and contract
-------------------
``<cache>/<backbone>/<video_id>.h5`` holds the dataset ``embeddings`` of shape
``(n_frames, dim)`` (float32 or float16), chunked along frames, and these attributes:

==================  ===========================================================
backbone            registry name, e.g. ``resnet50v2``
weights             ``imagenet``, ``random`` or ``sha256:<hex>`` of a weights file
input_size          side of the square backbone input, pixels
crop                JSON of the crop settings (with the pose file's fingerprint)
dtype, precision    storage type, compute precision
dim, n_frames, fps  embedding size, decoded frame count, frame rate
video_path          the video as given
video_size, video_mtime_ns, video_sha256   the video's fingerprint
extract_frames_per_s   speed of the extraction that wrote the file
package_version, created
==================  ===========================================================

A file is written under ``<video_id>.h5.tmp-<pid>-<token>`` in the same folder and renamed
into place (``os.replace``) only when every row is written and flushed, so a file with the
final name is always whole. A file is *fresh* when its provenance attributes equal those
the current video and settings would produce; otherwise it is re-extracted.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..errors import CacheError

log = logging.getLogger(__name__)

DATASET = "embeddings"
TMP_MARK = ".tmp-"
# Attributes compared to decide whether a cache file is still valid.
PROVENANCE_KEYS = ("backbone", "weights", "input_size", "crop", "dtype", "precision",
                   "video_size", "video_mtime_ns", "video_sha256")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def sanitize_id(stem: str) -> str:
    """A video id that is safe as a file name: no path separators, no '..'."""
    vid = _SAFE.sub("_", str(stem)).strip()
    vid = vid.lstrip(".") or "_"
    if vid in {".", ".."}:
        vid = "_"
    return vid


def cache_path(cache_root: str | Path, backbone: str, video_id: str) -> Path:
    """``<cache>/<backbone>/<video_id>.h5`` (the id is sanitised)."""
    return Path(cache_root) / sanitize_id(backbone) / f"{sanitize_id(video_id)}.h5"


class CacheWriter:
    """Write one cache file atomically: rows appended in order, renamed when complete.

    Parameters
    ----------
    path
        Final file name (from :func:`cache_path`).
    n_frames, dim
        Shape of the embeddings.
    dtype
        Storage type (``float32`` or ``float16``).
    attrs
        Provenance attributes to record.
    """

    def __init__(self, path: Path, n_frames: int, dim: int, dtype: str, attrs: dict[str, Any]):
        self.path = Path(path)
        self.n_frames, self.dim, self.dtype = int(n_frames), int(dim), dtype
        self.attrs = attrs
        self.tmp = self.path.with_name(f"{self.path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")
        self.rows = 0
        self._file: h5py.File | None = None

    def __enter__(self) -> CacheWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.tmp, "w")
        chunk = (max(1, min(self.n_frames, 256)), self.dim)
        self._ds = self._file.create_dataset(DATASET, shape=(self.n_frames, self.dim),
                                             dtype=self.dtype, chunks=chunk)
        return self

    def write(self, batch: np.ndarray) -> None:
        """Append rows (in frame order)."""
        n = batch.shape[0]
        if self.rows + n > self.n_frames:
            raise CacheError(f"{self.path}: more frames than the {self.n_frames} expected; "
                             "the video changed during extraction? re-run extract")
        self._ds[self.rows:self.rows + n] = batch.astype(self.dtype, copy=False)
        self.rows += n

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.rows != self.n_frames:
                raise CacheError(f"{self.path}: wrote {self.rows} of {self.n_frames} frames; "
                                 "re-run extract")
            if exc_type is None:
                for k, v in {**self.attrs, "n_frames": self.n_frames, "dim": self.dim,
                             "dtype": self.dtype, "package_version": __version__}.items():
                    self._file.attrs[k] = v
                self._file.flush()
                os.fsync(self._file.id.get_vfd_handle())
        except BaseException:
            self._close_and_remove()
            raise
        if exc_type is not None:
            self._close_and_remove()
            return
        self._file.close()
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)

    def _close_and_remove(self) -> None:
        try:
            if self._file is not None:
                self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems do not support fsync on folders; the rename still happened
    finally:
        os.close(fd)


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The provenance attributes of a cache file (CacheError when unreadable)."""
    try:
        with h5py.File(path, "r") as f:
            return {k: _plain(v) for k, v in f.attrs.items()}
    except (OSError, KeyError) as exc:
        raise CacheError(f"{path}: unreadable cache file ({exc}); delete it or re-run extract "
                         "with --overwrite") from None


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    return v


def read_embeddings(path: str | Path, expected_dim: int | None = None,
                    expected_backbone: str | None = None) -> np.ndarray:
    """The ``(n_frames, dim)`` embeddings of a cache file, checked against expectations."""
    try:
        with h5py.File(path, "r") as f:
            if DATASET not in f:
                raise CacheError(f"{path}: no '{DATASET}' dataset; not a mouse-pipeline cache "
                                 "file: delete it or re-run extract with --overwrite")
            backbone = _plain(f.attrs.get("backbone"))
            if expected_backbone is not None and backbone != expected_backbone:
                raise CacheError(f"{path}: holds {backbone!r} embeddings where {expected_backbone!r} "
                                 "was expected; re-run extract with --overwrite")
            emb = f[DATASET][()]
    except OSError as exc:
        raise CacheError(f"{path}: unreadable cache file ({exc}); re-run extract with --overwrite") from None
    if expected_dim is not None and emb.shape[1] != expected_dim:
        raise CacheError(f"{path}: embeddings have {emb.shape[1]} dimensions, expected "
                         f"{expected_dim}; re-run extract with --overwrite")
    return emb


def is_fresh(path: str | Path, expected: dict[str, Any]) -> tuple[bool, str]:
    """Whether a cache file matches the expected provenance, and why not."""
    path = Path(path)
    if not path.is_file():
        return False, "not cached"
    try:
        attrs = read_attrs(path)
        with h5py.File(path, "r") as f:
            rows = f[DATASET].shape[0] if DATASET in f else -1
    except (CacheError, OSError) as exc:
        return False, f"unreadable ({exc})"
    if rows != attrs.get("n_frames"):
        return False, "incomplete"
    for key in PROVENANCE_KEYS:
        if key in expected and attrs.get(key) != expected[key]:
            what = "video changed" if key.startswith("video_") else f"{key} changed"
            return False, f"{what} ({attrs.get(key)!r} -> {expected[key]!r})"
    return True, "up to date"


@dataclass(frozen=True)
class CacheEntry:
    """One cached file, as listed by :func:`list_cache`."""

    video_id: str
    backbone: str
    n_frames: int
    dim: int
    dtype: str
    bytes: int
    path: Path
    attrs: dict[str, Any]


def list_cache(cache_root: str | Path) -> list[CacheEntry]:
    """Every complete cache file under a cache root (temporary files excluded)."""
    out = []
    for path in sorted(Path(cache_root).glob("*/*.h5")):
        try:
            attrs = read_attrs(path)
        except CacheError as exc:
            log.warning("%s", exc)
            continue
        out.append(CacheEntry(path.stem, path.parent.name, int(attrs.get("n_frames", -1)),
                              int(attrs.get("dim", -1)), str(attrs.get("dtype", "?")),
                              path.stat().st_size, path, attrs))
    return out


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files left by killed writers (only those whose process is gone)."""
    removed = []
    for tmp in Path(folder).glob(f"*{TMP_MARK}*"):
        pid = tmp.name.split(TMP_MARK, 1)[1].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    if removed:
        log.info("removed %d unfinished temporary file(s) from %s", len(removed), folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
