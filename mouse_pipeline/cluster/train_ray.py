"""Stage 2 on Ray: every hyperparameter trial of every unfinished (backbone, model, fold) a task.

:class:`RayRunner` is a runner of :mod:`.sequences.scheduler` (the interface of its
``InlineRunner`` and ``PoolRunner``: ``submit(key, unit, t, params)`` and ``results()``),
chosen there when ``cluster.ray.enabled``. The scheduler stays the one loop that keeps
each fold's best trial and writes the fold folder in the driver, so kill and resume are
those of a local run, and a run may resume with or without Ray.

A task fits one trial in a worker process with the worker pool's own task
(``scheduler._trial_in_worker``: one backbone's videos kept between tasks, heads packed as
``.keras`` bytes). Results are those of the sequential run bit for bit: seeds depend only
on (seed, fold, trial, head), op determinism is on as in ``train``, and the intra-op pool
keeps TensorFlow's default size (:func:`.ray_runtime.configure_worker`). A trial whose
worker dies is retried by Ray (``cluster.ray.max_retries``): a trial is a pure function
of its inputs, so a retry gives the same result.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from ..config import Config
from . import ray_runtime

ray = ray_runtime.require_ray()  # a one-line error without the cluster extra
log = logging.getLogger(__name__)


@ray.remote
def _trial_task(cfg: Config, unit: Any, t: int, params: dict[str, Any], progress: bool) -> tuple[float, list]:
    """Fit trial ``t`` of ``unit`` in a Ray worker; its score and packed heads."""
    if progress and not logging.getLogger("mouse_pipeline").handlers:  # epochs shown by the driver
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger("mouse_pipeline").addHandler(handler)
        logging.getLogger("mouse_pipeline").setLevel(logging.INFO)
    ray_runtime.configure_worker(cfg.cluster.ray, deterministic=True)
    from ..sequences.scheduler import _trial_in_worker

    return _trial_in_worker(cfg, unit, t, params, progress)


class RayRunner:
    """Trials fitted as Ray tasks; results in the order they complete (the scheduler sorts)."""

    def __init__(self, cfg: Config, progress: bool) -> None:
        self.cfg, self.progress = cfg, progress
        self.settings = cfg.cluster.ray
        self.pending: dict[Any, tuple[Any, str]] = {}
        self._session: Any = None

    def __enter__(self) -> RayRunner:
        self._session = ray_runtime.connect(self.settings, log_to_driver=self.progress)
        self.ray = self._session.__enter__()
        self.opts = ray_runtime.worker_options(self.ray, self.settings)
        self.cfg_ref = self.ray.put(self.cfg)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            for ref in self.pending:
                self.ray.cancel(ref, force=True)
            self.pending.clear()
        finally:
            self._session.__exit__(*exc)

    def submit(self, key: Any, unit: Any, t: int, params: dict[str, Any]) -> None:
        if not self.pending:
            log.info("training trials on Ray, %d at a time", ray_runtime.workers_at_once(self.ray, self.settings))
        ref = _trial_task.options(**self.opts).remote(self.cfg_ref, unit, t, params, self.progress)
        self.pending[ref] = (key, f"{unit.label} trial {t + 1}")

    def results(self) -> Iterator[tuple[Any, float, list]]:
        while self.pending:
            (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
            key, what = self.pending.pop(ref)
            score, heads = ray_runtime.get(self.ray, ref, what, self.settings)
            yield key, score, heads
