"""Small file helpers every writer uses: atomic writes, file hashes, one-line reasons.

Atomic writes
-------------
A file is written under a temporary name in the same folder and renamed into place
only when complete and flushed to disk, so a file with the final name is always whole,
whatever killed the writer. There is one temporary-name scheme for the whole project::

    <name>.tmp-<host>-<pid>-<token><suffix>

(``suffix`` is the final name's, so Keras and matplotlib still see ``.keras`` or
``.png``). :func:`temp_owner` reads the host and pid back, which is how the cache tells
a killed writer's leftovers from a file being written now.

This module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: What marks a temporary file of :func:`temp_path` (``<name>.tmp-<host>-<pid>-...``).
TMP_MARK = ".tmp-"


def host_name() -> str:
    """This machine's short host name, safe inside a file name."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` in the project's one scheme."""
    path = Path(path)
    return path.with_name(f"{path.name}{TMP_MARK}{host_name()}-{os.getpid()}-{secrets.token_hex(4)}"
                          f"{path.suffix}")


def temp_owner(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` encoded in a temporary file name, or None when it is not one."""
    if TMP_MARK not in name:
        return None
    parts = name.split(TMP_MARK, 1)[1].rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1])
    if len(parts) == 2 and parts[0].isdigit():  # cache files of older versions: no host
        return host_name(), int(parts[0])
    return None


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a folder's) data to disk; folders may not support it."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` through; renamed into place on success.

    For writers that want a file name (``model.save``, ``savefig``, ``h5py.File``). On
    an exception the temporary file is deleted and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open`` a temporary file for writing; renamed to ``path`` when the block ends cleanly.

    Text mode defaults to UTF-8 (``newline`` and the rest pass through to ``open``).
    """
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (NumPy scalars become floats)."""
    write_text(path, json.dumps(obj, indent=2, default=float) + "\n")


def sha256_file(path: str | Path, limit: int | None = None, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's content (its first ``limit`` bytes when given)."""
    digest = hashlib.sha256()
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            block = fh.read(chunk if left is None else min(chunk, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    return digest.hexdigest()


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
