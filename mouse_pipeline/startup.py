"""Start-up time of the commands that need no model, measured as a user meets it.

``mouse-pipeline --help``, ``cache ls --config``, a re-extract with every file already
fresh and a config error import neither TensorFlow nor Keras (only building or running a
model does), so each should take at most :data:`STARTUP_TARGET_S` seconds more than bare
``python -c pass``. :func:`startup_figures` times each as a new ``python -m stages.cli``
process, the way a shell runs it; ``mouse-pipeline bench`` reports the figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .config import load_config
from .fileio import write_text

#: Start-up target: a command that needs no model, at most this much over bare Python (s).
STARTUP_TARGET_S = 1.5


@dataclass(frozen=True)
class _Command:
    """A start-up command: ``python -m stages.cli ARGS`` (None: bare ``python -c pass``)."""

    name: str
    args: tuple[str, ...] | None
    exit_code: int = 0
    says: str = ""  # what its output must contain: proof that it did what it is timed for


def _startup_commands(cache: Path, config: Path) -> list[_Command]:
    return [_Command("python -c pass", None),
            _Command("mouse-pipeline --help", ("--help",), says="extract"),
            _Command("cache ls --config", ("cache", "ls", str(cache), "--config", str(config)), says="fresh"),
            _Command("no-op re-extract", ("extract", "--config", str(config), "--quiet"),
                     says="0 extracted, 2 up to date"),
            _Command("config error", ("extract", "--config", str(config), "--set", "extract.batch_size=0"),
                     exit_code=2, says="error: ")]


def startup_figures(work: Path, repeats: int = 5) -> dict:
    """Median wall time of commands that need no model, each in a new Python process.

    A tiny synthetic dataset (2 videos of 16 frames) is extracted first, so that the
    re-extract finds every file fresh and ``cache ls`` has files to judge.

    Parameters
    ----------
    work
        A scratch folder.
    repeats
        Timed runs of each command, after one untimed run (the file cache).

    Returns
    -------
    dict
        ``repeats``, ``target_over_bare_s`` (:data:`STARTUP_TARGET_S`), and per command
        name ``seconds`` (median wall time) and ``over_bare_s`` (that minus bare Python's).

    Raises
    ------
    RuntimeError
        A command ended with another exit code or without its expected output.
    """
    from .features.extract import extract

    config = _startup_dataset(work / "startup")
    extract(load_config(config), progress=False)
    seconds = {c.name: _median_wall_s(c, repeats) for c in _startup_commands(work / "startup" / "cache", config)}
    bare = seconds["python -c pass"]
    return {"repeats": repeats, "target_over_bare_s": STARTUP_TARGET_S, "seconds": seconds,
            "over_bare_s": {name: t - bare for name, t in seconds.items()}}


def _startup_dataset(root: Path) -> Path:
    """Two tiny synthetic videos and a config extracting them (untrained, 32 px); its path."""
    from .synthetic import generate_dataset

    generate_dataset(root / "data", n_videos=2, n_frames=16, size=32, seed=0)
    config = root / "config.yaml"
    # JSON strings are YAML strings: any path survives
    write_text(config, f"data:\n  videos: {json.dumps(str(root / 'data' / 'videos'))}\n"
                       "  crop:\n    mode: none\n"
                       f"extract:\n  cache: {json.dumps(str(root / 'cache'))}\n"
                       "  backbones: [mobilenet_v3_small]\n  weights: random\n  input_size: 32\n")
    return config


def _median_wall_s(command: _Command, repeats: int) -> float:
    argv = [sys.executable, "-c", "pass"] if command.args is None else [sys.executable, "-m", "stages.cli",
                                                                       *command.args]
    times = []
    for i in range(repeats + 1):  # the first run fills the file cache and is not counted
        t0 = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if proc.returncode != command.exit_code or command.says not in proc.stdout + proc.stderr:
            raise RuntimeError(f"start-up command {command.name!r} ended with exit code {proc.returncode} "
                               f"(expected {command.exit_code}, saying {command.says!r}): "
                               f"{(proc.stderr or proc.stdout)[-300:]}")
        if i:
            times.append(elapsed)
    return statistics.median(times)
