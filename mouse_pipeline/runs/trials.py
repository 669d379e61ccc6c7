"""The trial log of a fold not yet written: each trial's result as it scored, for a resumed run.

``<backbone>/<model>/fold_<i>.trials.json`` (:data:`.layout.TRIALS_SUFFIX`) holds, after
every trial of an unfinished fold, the scored trials so far: number, kind, settings,
validation score and record, ASHA's rungs, whether it was pruned. A run killed in the
middle of a fold replays them when it is resumed (an adaptive search is told them again,
in order, instead of fitting them again) and fits only the remaining trials, and the kept
trial once more if it was a replayed one (its models were not kept): seeds make that fit
the one that was lost. The log is written atomically, names the config it belongs to
(:func:`config_fingerprint`: the settings that change results), and is removed once the
fold folder is written.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..fileio import first_line, write_json


def comparable_config(d: dict) -> dict:
    """A config's plain dict without the settings that do not change results (a run and
    its resumption may differ in them): ``train.workers``, ``train.memory_gb``, ``cluster``."""
    d = json.loads(json.dumps(d))
    d["train"].pop("workers", None)
    d["train"].pop("memory_gb", None)
    d.pop("cluster", None)  # where it ran (--ray) is not what it computed
    d["train"].pop("run", None)
    return d


def config_fingerprint(d: dict) -> str:
    """The sha256 of :func:`comparable_config` of a config's plain dict."""
    return hashlib.sha256(json.dumps(comparable_config(d), sort_keys=True).encode()).hexdigest()


class TrialLog:
    """The trial log of one unfinished fold folder."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path, self.fingerprint = Path(path), fingerprint

    def read(self) -> dict[int, dict[str, Any]]:
        """The logged trials by number (none without a log); a log of another config or a
        damaged one is a :class:`RunError` naming it."""
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            trials = {int(t["trial"]): t for t in data["trials"]}
            config = data["config"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunError(f"{self.path}: unreadable trial log ({first_line(exc)}); delete it, and "
                           "that fold's trials are fitted again") from None
        if config != self.fingerprint:
            raise RunError(f"{self.path}: trial log of a run with another config; delete it, and "
                           "that fold's trials are fitted again")
        return trials

    def write(self, trials: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"config": self.fingerprint, "trials": trials})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
