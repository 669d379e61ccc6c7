"""One writer at a time on a cache folder or run folder.

A lock is a small JSON file (pid, host, start time) created with ``O_CREAT | O_EXCL``.
A second process finds it and stops with a :class:`~mouse_pipeline.errors.LockError`
naming the holder; a lock whose process is gone (killed, power cut) is stale and taken over.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockError

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@contextmanager
def acquire_lock(folder: str | Path, name: str = ".lock", wait: float = 0.0) -> Iterator[Path]:
    """Hold ``<folder>/<name>`` for the duration of the ``with`` block.

    Parameters
    ----------
    folder
        The folder to protect (created if missing).
    name
        Lock file name.
    wait
        Seconds to wait for a live holder before giving up (0: fail at once).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    deadline = time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            pid = holder.get("pid")
            same_host = holder.get("host") == me["host"]
            if not isinstance(pid, int) or (same_host and not _pid_alive(pid)):
                log.warning("%s: stale lock of pid %s (process gone): taking it over", path, pid)
                path.unlink(missing_ok=True)
                continue
            if time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            raise LockError(f"{folder} is locked by pid {pid} on {holder.get('host')} (started "
                            f"{holder.get('started')}); wait for it to finish or stop it") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        break
    try:
        yield path
    finally:
        if _holder(path).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
