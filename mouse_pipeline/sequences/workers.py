"""Worker processes for ``train.workers``: hyperparameter trials trained in parallel.

A :class:`WorkerPool` is a ``concurrent.futures.ProcessPoolExecutor`` with the *spawn*
start method (TensorFlow is not fork-safe) and the guarantees a long training run needs:

- **Errors surface, nothing hangs.** An exception raised in a worker is re-raised in the
  parent as the same exception (a :class:`~mouse_pipeline.errors.PipelineError` stays one
  line); a worker that dies (out of memory, killed) becomes a :class:`RunError`.
- **No orphans.** Workers ignore Ctrl-C (a terminal sends SIGINT to the whole process
  group): the parent gets the ``KeyboardInterrupt``, and leaving the pool on any exception
  terminates every worker and waits for it. A parent killed outright (SIGKILL, power to
  the process) takes its workers with it: on Linux each worker asks the kernel for SIGKILL
  when its parent dies (``PR_SET_PDEATHSIG``), elsewhere a watchdog thread notices.
- **One log.** Workers send their log records through a queue to the parent, which hands
  each to its own logger of the same name, so progress lines (fold, trial, epoch) appear
  where and as the parent's own do.

This module imports no TensorFlow; what a worker must set up (threads, determinism) is
the ``setup`` callable given to the pool, run once in each worker.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import logging
import logging.handlers
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import RunError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_JOIN_S = 5.0


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class WorkerPool:
    """``n`` spawned worker processes; use as a context manager.

    Parameters
    ----------
    n
        Number of worker processes (at least 1).
    setup
        A picklable callable (module-level function or ``functools.partial`` of one) run
        once in each worker before its first task, or None.
    what
        What the workers do, for the message when one dies (e.g. ``"training"``).
    """

    def __init__(self, n: int, setup: Callable[[], None] | None = None, what: str = "work"):
        self.n, self.setup, self.what = max(1, int(n)), setup, what
        self._ctx = mp.get_context("spawn")
        self._logs: Any = None
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._executor: cf.ProcessPoolExecutor | None = None
        self._started: dict[int, Any] = {}  # pid -> multiprocessing.Process

    def __enter__(self) -> WorkerPool:
        self._logs = self._ctx.Queue()
        self._reader = threading.Thread(target=self._forward_logs, name="worker-logs", daemon=True)
        self._reader.start()
        level = logging.getLogger("mouse_pipeline").getEffectiveLevel()
        self._executor = cf.ProcessPoolExecutor(
            self.n, mp_context=self._ctx, initializer=_init_worker,
            initargs=(os.getpid(), self._logs, level, self.setup))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._executor.shutdown(wait=True)
            else:  # an error, or Ctrl-C: stop every worker now, and wait until each is gone
                self.terminate()
        except BaseException:  # Ctrl-C while the workers were finishing
            self.terminate()
            raise
        finally:
            self._stop.set()
            if self._reader is not None:
                self._reader.join(timeout=_JOIN_S)
            self._logs.close()

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        """Queue ``fn(*args)`` for a worker; ``fn`` must be importable (module level)."""
        try:
            fut = self._executor.submit(fn, *args)
        except BrokenProcessPool:
            raise self._broken() from None
        for p in self._processes():  # workers start on demand, from submit
            self._started.setdefault(p.pid, p)
        return fut

    def completed(self, futures: Iterable[cf.Future]) -> Iterator[tuple[cf.Future, Any]]:
        """``(future, result)`` as tasks finish; a task's exception is raised here."""
        try:
            for fut in cf.as_completed(futures):
                yield fut, fut.result()
        except BrokenProcessPool:
            raise self._broken() from None

    def _broken(self) -> RunError:
        for p in self._started.values():
            p.join(timeout=_JOIN_S)
        # the pool ends the other workers with SIGTERM; the one that broke it died otherwise
        codes = sorted({p.exitcode for p in self._started.values()} - {None, 0, -signal.SIGTERM})
        how = ", ".join(f"signal {-c}" if c < 0 else f"exit code {c}" for c in codes)
        return RunError(
            f"a {self.what} worker process stopped unexpectedly{f' ({how})' if how else ''}: "
            "killed, out of memory, or its error is printed above; finished folds are kept: "
            "run again, perhaps with a smaller train.workers")

    def terminate(self) -> None:
        """Cancel queued tasks, end every worker (SIGTERM, then SIGKILL) and reap it."""
        procs = list({**self._started, **{p.pid: p for p in self._processes()}}.values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + _JOIN_S
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()

    def pids(self) -> list[int]:
        """Process ids of the workers started so far."""
        return list(self._started)

    def _processes(self) -> list[Any]:
        # ProcessPoolExecutor keeps its workers in _processes (pid -> Process); Python 3.14
        # adds public terminate_workers(), which this project cannot require yet.
        procs = getattr(self._executor, "_processes", None) or {}
        return list(procs.values())

    def _forward_logs(self) -> None:
        """Hand each worker log record to the parent's logger of the same name."""
        while True:
            try:
                record = self._logs.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            except (EOFError, OSError, ValueError):  # queue closed or broken by a killed worker
                return
            logger = logging.getLogger(record.name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)


def _init_worker(parent_pid: int, logs: Any, level: int, setup: Callable[[], None] | None) -> None:
    """Run once in each worker: signals, parent watch, logging, then the caller's setup."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent(parent_pid)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(logs)]
    root.setLevel(logging.WARNING)
    logging.getLogger("mouse_pipeline").setLevel(level)
    if setup is not None:
        setup()


def _exit_with_parent(parent_pid: int) -> None:
    """End this process as soon as its parent is gone, however the parent ended."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
