"""The feature cache: one HDF5 file per (backbone, video). This module is its contract.

Layout
------
``<cache>/<backbone>/<video_id>.h5``, where ``video_id`` is the video's file stem passed
through :func:`sanitize_id` (only ``A-Z a-z 0-9 . _ -``; anything else becomes ``_``), so
no id can name a file outside its backbone folder.

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
video_path          absolute path of the video when it was extracted
video_size          the video's size in bytes           } the video's fingerprint
video_mtime_ns      its modification time, ns           } (``video.video_fingerprint``)
video_sha256        hash of its first and last MiB      }
fps                 the video's frame rate as recorded in its container
n_frames, dim       shape of ``embeddings`` (n_frames is the true decoded count)
package_version     ``mouse_pipeline.__version__`` of the writer
created             ISO 8601 time (UTC) the file was completed
==================  ================================================================

Extraction may add informative attributes (e.g. ``extract_frames_per_s``).

Freshness
---------
A file is *fresh* for a video and settings when every key of :data:`PROVENANCE_KEYS`
equals what they would record now (:func:`expected_attrs`, :func:`is_fresh`): same
backbone, weights, input size, crop settings, pose file content, storage dtype and
precision, and the same video size, mtime and content hash. Anything else is stale.

Atomicity
---------
:class:`CacheWriter` writes ``<video_id>.h5.tmp-<host>-<pid>-<token>`` in the same
folder, checks the row count, flushes and fsyncs it, and renames it into place with
``os.replace``. A file with the final name is therefore always complete; temporary
names never end in ``.h5``, so a ``*.h5`` glob never sees a partial file. Leftovers
from killed writers are removed by :func:`remove_stale_temps`.

Write errors (a full disk)
--------------------------
HDF5 writes the temporary file through :class:`_TempFile` (h5py's ``fileobj`` driver),
not through its own file driver. A failed write of HDF5's own driver reaches Python as a
RuntimeError whose errno is buried in its text, and an HDF5 file whose close failed that
way cannot be closed again: the process crashes at exit (seen with HDF5 2.0 on a full
tmpfs). :class:`_TempFile` keeps the operating system's error with its errno, answers
HDF5 as if the write had succeeded, and drops every later write of that file, so HDF5
never sees a failure; the writer checks for a recorded error after every HDF5 call and
deletes the file. A full disk (``ENOSPC``, or ``EDQUOT``: quota) becomes a one-line
:class:`~mouse_pipeline.errors.CacheError` that names the file and says to free space and
run extract again (files finished before are kept); any other write error likewise names
the file and the system's reason.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..errors import CacheError, InputError

log = logging.getLogger(__name__)

DATASET = "embeddings"
TMP_MARK = ".tmp-"
DTYPES = ("float32", "float16")
CHUNK_FRAMES = 256
FINGERPRINT_KEYS = ("video_size", "video_mtime_ns", "video_sha256")
# Attributes that must equal the current settings and video for a file to be fresh.
PROVENANCE_KEYS = ("backbone", "weights", "input_size", "crop", "pose_sha256", "dtype",
                   "precision") + FINGERPRINT_KEYS
# Attributes a writer must be given (it adds n_frames, dim, dtype, package_version, created).
REQUIRED_ATTRS = tuple(k for k in PROVENANCE_KEYS if k != "dtype") + ("pose_file", "video_path", "fps")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_writing: set[str] = set()  # temporary files this process is writing now
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


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


def cache_path(cache_root: str | Path, backbone: str, video_id: str) -> Path:
    """``<cache_root>/<backbone>/<video_id>.h5`` (backbone and id sanitised)."""
    return Path(cache_root) / sanitize_id(backbone) / f"{sanitize_id(video_id)}.h5"


def crop_json(settings: dict[str, Any]) -> str:
    """The canonical JSON text of crop settings, as stored in the ``crop`` attribute."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def expected_attrs(*, backbone: str, weights: str, input_size: int, crop: str | dict[str, Any],
                   dtype: str, precision: str, video_path: str | Path, fingerprint: dict[str, Any],
                   fps: float | None = None, pose_file: str = "", pose_sha256: str = "") -> dict[str, Any]:
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

    Returns
    -------
    dict
        Keys of :data:`PROVENANCE_KEYS` plus ``video_path``, ``pose_file`` and ``fps``.
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
    return attrs


def _host() -> str:
    return _UNSAFE.sub("_", socket.gethostname()) or "host"


class _TempFile(io.RawIOBase):
    """A cache file's temporary file as HDF5 writes it (h5py's ``fileobj`` driver).

    Positional reads and writes (``os.pread``/``os.pwrite``) on one descriptor. The first
    ``OSError`` of a write is kept in :attr:`error` with its errno, and from then on every
    write is dropped but reported to HDF5 as done: HDF5 never sees a failed write (after
    which its file could not be closed safely), and the file is deleted by its writer,
    which checks :attr:`error` after every HDF5 call. :meth:`drop` frees the file's
    space and drops every later write (for a file that is about to be deleted).
    """

    def __init__(self, path: Path):
        super().__init__()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.pos = 0
        self.error: OSError | None = None
        self.dropping = False

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self.pos = offset
        elif whence == io.SEEK_CUR:
            self.pos += offset
        else:
            self.pos = os.fstat(self.fd).st_size + offset
        return self.pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = os.pread(self.fd, len(view), self.pos)
        view[:len(data)] = data
        self.pos += len(data)
        return len(data)

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if not self.dropping:
            done = 0
            try:
                while done < len(view):
                    n = os.pwrite(self.fd, view[done:], self.pos + done)
                    if n <= 0:
                        raise OSError(errno.EIO, "the file system accepted no byte of a write")
                    done += n
            except OSError as exc:
                self.error = exc
                self.dropping = True
        self.pos += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        if not self.dropping:
            try:
                os.ftruncate(self.fd, size)
            except OSError as exc:
                self.error = exc
                self.dropping = True
        return size

    def drop(self) -> None:
        """Free the file's space and drop every later write: it is about to be deleted."""
        self.dropping = True
        if not self.closed:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass

    def sync(self) -> None:
        """fsync the file (an error is kept in :attr:`error`, like a failed write)."""
        try:
            os.fsync(self.fd)
        except OSError as exc:
            self.error = self.error or exc

    def close(self) -> None:
        if not self.closed:
            os.close(self.fd)
        super().close()


class CacheWriter:
    """Write one cache file atomically: rows appended in frame order, renamed when complete.

    Use as a context manager. On a clean exit the row count is checked, the attributes
    written, the file flushed, fsynced and renamed to its final name; on an exception
    (or a wrong row count) the temporary file is deleted and the final name untouched.
    A write that fails (a full disk above all) raises a one-line CacheError naming the
    file (see the module notes), from :meth:`write` or from the end of the block.

    Parameters
    ----------
    path
        Final file name (see :func:`cache_path`).
    n_frames, dim
        Shape of the embeddings.
    dtype
        Storage dtype, ``float32`` or ``float16``.
    attrs
        Attributes to record: at least :data:`REQUIRED_ATTRS` (see :func:`expected_attrs`).
        May be updated until the block ends (e.g. with timings).
    """

    def __init__(self, path: str | Path, n_frames: int, dim: int, dtype: str, attrs: dict[str, Any]):
        if dtype not in DTYPES:
            raise ValueError(f"cache dtype must be one of {DTYPES}, got {dtype!r}")
        if int(n_frames) < 1 or int(dim) < 1:
            raise ValueError(f"a cache file needs n_frames >= 1 and dim >= 1, got {n_frames}, {dim}")
        missing = [k for k in REQUIRED_ATTRS if attrs.get(k) is None]
        if missing:
            raise ValueError(f"cache attributes missing: {', '.join(missing)}")
        self.path = Path(path)
        self.n_frames, self.dim, self.dtype = int(n_frames), int(dim), dtype
        self.attrs = dict(attrs)
        self.tmp = self.path.with_name(
            f"{self.path.name}{TMP_MARK}{_host()}-{os.getpid()}-{secrets.token_hex(4)}")
        self.rows = 0
        self._io: _TempFile | None = None
        self._file: h5py.File | None = None
        self._ds: h5py.Dataset | None = None

    def __enter__(self) -> CacheWriter:
        _writing.add(str(self.tmp))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._io = _TempFile(self.tmp)
            self._file = h5py.File(self._io, "w")
            self._ds = self._file.create_dataset(DATASET, shape=(self.n_frames, self.dim), dtype=self.dtype,
                                                 chunks=(min(self.n_frames, CHUNK_FRAMES), self.dim))
            self._check_io()
        except BaseException as exc:
            self._discard()
            self._raise_os_error(exc)
            raise
        return self

    def write(self, batch: np.ndarray) -> None:
        """Append rows ``(B, dim)`` after those already written."""
        if self._ds is None:
            raise RuntimeError("CacheWriter.write outside its with-block")
        batch = np.asarray(batch)
        if batch.ndim != 2 or batch.shape[1] != self.dim:
            raise ValueError(f"{self.path}: expected rows of shape (B, {self.dim}), got {batch.shape}")
        n = batch.shape[0]
        if self.rows + n > self.n_frames:
            raise CacheError(f"{self.path}: more than the {self.n_frames} frames expected (the video "
                             "changed during extraction?); re-run extract")
        self._ds[self.rows:self.rows + n] = batch.astype(self.dtype, copy=False)
        self._check_io()
        self.rows += n

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._discard()
            return False
        try:
            if self.rows != self.n_frames:
                raise CacheError(f"{self.path}: {self.rows} of {self.n_frames} frames were written "
                                 "(the video changed during extraction?); re-run extract")
            attrs = {**self.attrs, "n_frames": self.n_frames, "dim": self.dim, "dtype": self.dtype,
                     "package_version": __version__,
                     "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            for key, value in attrs.items():
                self._file.attrs[key] = value
            self._file.flush()  # every byte reaches the file here, while a failure can still be seen
            self._check_io()
            self._file.close()
            self._io.sync()
            self._check_io()
            self._io.close()
            os.replace(self.tmp, self.path)
        except BaseException as exc:
            self._discard()
            self._raise_os_error(exc)
            raise
        _writing.discard(str(self.tmp))
        _fsync(self.path.parent)
        return False

    def _check_io(self) -> None:
        """Raise the write error the temporary file recorded, if any (HDF5 did not see it)."""
        if self._io is not None and self._io.error is not None:
            self._raise_os_error(self._io.error)

    def _raise_os_error(self, exc: BaseException) -> None:
        """Turn an operating-system error of this file into a one-line CacheError."""
        if not isinstance(exc, OSError) or exc.errno is None:
            return
        reason = exc.strerror or os.strerror(exc.errno)
        if exc.errno in DISK_FULL_ERRNOS:
            need = self.n_frames * self.dim * np.dtype(self.dtype).itemsize / 1e6
            raise CacheError(
                f"{self.path}: the disk is full ({reason}); the unfinished file was deleted. Free at "
                f"least {need:.1f} MB in {self.path.parent} and run extract again: videos already "
                "finished are kept and will not be extracted again") from exc
        raise CacheError(f"{self.path}: cannot write this cache file ({reason}); the unfinished file was "
                         f"deleted. Check {self.path.parent} and run extract again") from exc

    def _discard(self) -> None:
        try:
            if self._io is not None:
                self._io.drop()  # frees its space; what HDF5 still writes while closing goes nowhere
            if self._file is not None and self._file.id.valid:
                try:
                    self._file.close()
                except Exception as exc:  # the file is deleted anyway; the first error is what matters
                    log.debug("%s: closing the unfinished file failed: %s", self.tmp, exc)
        finally:
            if self._io is not None:
                self._io.close()
            self.tmp.unlink(missing_ok=True)
            _writing.discard(str(self.tmp))


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) data to disk; folders may not support it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _unreadable(path: Path | str, exc: BaseException) -> CacheError:
    reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    return CacheError(f"{path}: unreadable cache file ({reason}); delete it or re-run extract "
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
        :data:`PROVENANCE_KEYS` present here are compared.

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
        return False, f"unreadable: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
    if rows is None or rows != attrs.get("n_frames"):
        return False, f"incomplete ({rows} rows, n_frames {attrs.get('n_frames')})"
    for key in PROVENANCE_KEYS:
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


def _temp_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) encoded in a temporary file name, or None when it is not one of ours."""
    tail = name.split(TMP_MARK, 1)[1]
    parts = tail.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1])
    if len(parts) == 2 and parts[0].isdigit():  # older names without the host
        return _host(), int(parts[0])
    return None


def remove_stale_temps(cache_root: str | Path, any_host: bool = False) -> list[Path]:
    """Delete temporary files left by killed writers anywhere under ``cache_root``.

    Parameters
    ----------
    cache_root
        A cache root or one backbone folder.
    any_host
        Also delete temporary files written from other hosts (whose processes cannot be
        checked from here). Only safe while holding the folder's lock, as extract does.

    Returns
    -------
    list of Path
        The files deleted. A file is kept while its writer (same host, pid alive, or
        this very process still writing it) may still be working on it.
    """
    from ..locks import pid_alive

    removed = []
    host = _host()
    for tmp in sorted(Path(cache_root).rglob(f"*.h5{TMP_MARK}*")):
        owner = _temp_owner(tmp.name)
        if owner is None or not tmp.is_file() or str(tmp) in _writing:
            continue
        tmp_host, pid = owner
        if tmp_host != host and not any_host:
            log.debug("%s: temporary file from host %s kept (its writer cannot be checked)", tmp, tmp_host)
            continue
        if tmp_host == host and pid != os.getpid() and pid_alive(pid):
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    if removed:
        log.info("removed %d unfinished temporary file(s) left by killed runs under %s",
                 len(removed), cache_root)
    return removed
