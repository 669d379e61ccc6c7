"""A run's log files: what ``train``, ``report`` and ``predict`` said, with times, kept in the run.

:func:`run_log` copies every log record of the ``mouse_pipeline`` loggers (INFO and above,
whatever ``--quiet`` shows on the terminal) into ``<run>/logs/<command>-<time>.log`` while
a command runs, with the command line first and, when it fails, its one-line error last.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from .fileio import first_line
from .runs import LOG_DIR

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _new_log_path(folder: Path, command: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"{command}-{stamp}.log"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{command}-{stamp}-{n}.log"
    return path


@contextlib.contextmanager
def run_log(run_dir: str | Path, command: str) -> Iterator[Path | None]:
    """Log this command into the run folder's ``logs/`` while the block runs; yields the file.

    A run folder that cannot be written (read-only, shared) gets no log file: a warning
    says so and the command goes on (yielding None).
    """
    logger = logging.getLogger("mouse_pipeline")
    folder = Path(run_dir) / LOG_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = _new_log_path(folder, command)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError as exc:
        logger.warning("%s: cannot write a log file here (%s); this %s is not logged in the run",
                       folder, exc.strerror or first_line(exc), command)
        yield None
        return
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)  # the terminal's handler still shows only what it did
    try:
        logger.info("mouse-pipeline %s", shlex.join(sys.argv[1:]) or command)
        yield path
    except BaseException as exc:
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {first_line(exc)}"
        handler.handle(logging.makeLogRecord({"name": logger.name, "levelno": logging.ERROR,
                                              "levelname": "ERROR", "msg": what}))
        raise
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
