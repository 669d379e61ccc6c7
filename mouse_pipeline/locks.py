"""One writer at a time on a cache folder or run folder.

A lock is a small JSON file ``{"pid", "host", "started"}`` created with
``O_CREAT | O_EXCL``, so exactly one process creates it. Another process finds it and
stops with a :class:`~mouse_pipeline.errors.LockError` naming the holder (or waits, with
``wait``). A lock left by a process that is gone (killed, power cut) is *stale* and taken
over, with a warning. Liveness can only be checked on the same host: a lock held from
another host is respected until its holder removes it (or a person deletes the file).

Taking over a stale lock is itself guarded (``<lock>.break``, created with ``O_EXCL``), so
two processes that find the same stale lock at the same moment cannot both end up holding it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import LockError

log = logging.getLogger(__name__)

_POLL_S = 0.2
_WRITING_GRACE_S = 2.0  # a lock file this young and still empty is being written
_BREAK_GRACE_S = 30.0  # a takeover guard this old was left by a killed process


class PathRegistry:
    """Paths this process is using now: lock files it holds, temporary files it writes.

    What a file name alone cannot tell: a lock file with this process's pid, or a
    temporary file with it, is in use only if this very process registered it (a pid is
    reused by later processes). Safe to use from several threads.
    """

    def __init__(self) -> None:
        self._paths: set[str] = set()
        self._guard = threading.Lock()

    def add(self, path: str | Path) -> None:
        """Register ``path`` as in use."""
        with self._guard:
            self._paths.add(str(path))

    def discard(self, path: str | Path) -> None:
        """Forget ``path`` (nothing happens when it is not registered)."""
        with self._guard:
            self._paths.discard(str(path))

    def __contains__(self, path: object) -> bool:
        with self._guard:
            return str(path) in self._paths


#: Lock files held by this process.
HELD = PathRegistry()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (zombies count as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: Path) -> tuple[str, dict] | None:
    """Raw text and parsed content of a lock file; None when it is gone."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return "", {}
    try:
        data = json.loads(text)
    except ValueError:
        data = {}
    return text, data if isinstance(data, dict) else {}


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _is_stale(path: Path, holder: dict, host: str) -> bool:
    pid = holder.get("pid")
    if not isinstance(pid, int):  # empty or garbled: stale unless it is being written now
        return _age_s(path) > _WRITING_GRACE_S
    if holder.get("host") != host:
        return False  # cannot tell whether a process on another host runs
    if pid == os.getpid():  # our own pid, but not held by us: a previous life of this pid
        return path not in HELD
    return not pid_alive(pid)


def _break(path: Path, stale_text: str) -> None:
    """Remove a stale lock file if it still holds ``stale_text`` (guarded against races)."""
    guard = path.with_name(path.name + ".break")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _age_s(guard) > _BREAK_GRACE_S:
            guard.unlink(missing_ok=True)
        return  # another process is taking it over; the caller looks again
    try:
        now = _read(path)
        if now is not None and now[0] == stale_text:
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)
        guard.unlink(missing_ok=True)


@contextmanager
def acquire_lock(folder: str | Path, name: str = ".lock", wait: bool | float = False) -> Iterator[Path]:
    """Hold ``<folder>/<name>`` for the duration of a ``with`` block.

    Parameters
    ----------
    folder
        The folder to protect (created if missing).
    name
        Lock file name inside it.
    wait
        False: fail at once when a live process holds the lock; True: wait until it is
        free; a number: wait at most that many seconds.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    LockError
        Held by a live process (or one on another host), and not released in time.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    host = socket.gethostname()
    me = {"pid": os.getpid(), "host": host, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    limit = float("inf") if wait is True else float(wait or 0.0)
    deadline = time.monotonic() + limit
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            found = _read(path)
            if found is None:
                continue  # released between our two calls
            text, holder = found
            if _is_stale(path, holder, host):
                log.warning("%s: stale lock of pid %s on %s (process gone): taking it over",
                            path, holder.get("pid"), holder.get("host"))
                _break(path, text)
                time.sleep(0.01)
                continue
            pid = holder.get("pid")
            mine = pid == os.getpid() and path in HELD  # waiting on ourselves never ends
            if not mine and (time.monotonic() < deadline or not isinstance(pid, int)):
                if not announced and isinstance(pid, int):
                    log.info("%s is locked by pid %s; waiting", folder, pid)
                    announced = True
                time.sleep(_POLL_S)
                continue
            where = "" if holder.get("host") == host else f" on host {holder.get('host')}"
            raise LockError(f"{folder} is locked by pid {pid}{where} (started {holder.get('started')}); "
                            f"wait for it or stop it (if no such process runs, delete {path})") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:  # e.g. a full disk: leave no empty lock behind
            path.unlink(missing_ok=True)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise LockError(f"{path}: cannot write the lock file ({exc.strerror or exc}); "
                            + (f"the disk is full: free space in {folder} and run again" if full
                               else f"check {folder} and run again")) from exc
        break
    HELD.add(path)
    try:
        yield path
    finally:
        HELD.discard(path)
        found = _read(path)
        if found is not None and found[1] == me:
            path.unlink(missing_ok=True)
