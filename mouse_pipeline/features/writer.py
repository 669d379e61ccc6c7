"""Writing the feature cache: :class:`CacheWriter`, atomic and safe on a full disk.

The layout, attributes and freshness of a cache file are the contract in
:mod:`mouse_pipeline.features.store`; this module writes files that keep it.

Atomicity
---------
:class:`CacheWriter` writes ``<video_id>.h5.tmp-<host>-<pid>-<token>`` in the same
folder: the project's one temporary name (:func:`mouse_pipeline.fileio.temp_path`)
without the final ``.h5``, so a ``*.h5`` glob never sees a partial file. It checks the
row count, flushes and fsyncs the file, and renames it into place with ``os.replace``.
A file with the final name is therefore always complete. Leftovers from killed writers
are removed by :func:`remove_stale_temps` (older writers' names, ``<id>.h5.tmp-<pid>-<token>``
without the host, too).

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
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..errors import CacheError
from ..fileio import TMP_MARK, fsync_path, host_name, temp_owner, temp_path
from ..locks import PathRegistry, pid_alive
from .store import CHUNK_FRAMES, DATASET, DTYPES, REQUIRED_ATTRS

log = logging.getLogger(__name__)

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
#: Temporary files this process is writing now (:func:`remove_stale_temps` spares them).
WRITING = PathRegistry()


def cache_temp_path(path: str | Path) -> Path:
    """A fresh temporary name for cache file ``path``: ``<name>.tmp-<host>-<pid>-<token>``.

    :func:`mouse_pipeline.fileio.temp_path` without its trailing ``.h5``, so that no
    temporary file matches ``*.h5``.
    """
    path = Path(path)
    tmp = temp_path(path)
    return tmp.with_name(tmp.name.removesuffix(path.suffix))


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
        self.tmp = cache_temp_path(self.path)
        self.rows = 0
        self._io: _TempFile | None = None
        self._file: h5py.File | None = None
        self._ds: h5py.Dataset | None = None

    def __enter__(self) -> CacheWriter:
        WRITING.add(self.tmp)
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
        WRITING.discard(self.tmp)
        fsync_path(self.path.parent)
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
            WRITING.discard(self.tmp)



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
    removed = []
    host = host_name()
    for tmp in sorted(Path(cache_root).rglob(f"*.h5{TMP_MARK}*")):
        owner = temp_owner(tmp.name)
        if owner is None or not tmp.is_file() or tmp in WRITING:
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
