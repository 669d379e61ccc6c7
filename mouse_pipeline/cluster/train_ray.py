"""Stage 2 on Ray: every hyperparameter trial of every unfinished (backbone, model, fold) a task.

:class:`RayRunner` is a runner of :mod:`.sequences.scheduler` (the interface of its
``InlineRunner`` and ``PoolRunner``: ``submit(key, task)`` and ``results()``),
chosen there when ``cluster.ray.enabled``. The scheduler stays the one loop that keeps
each fold's best trial and writes the fold folder in the driver, so kill and resume are
those of a local run, and a run may resume with or without Ray.

A task fits one trial (or the refit of a unit's kept trial) in a worker process with the
worker pool's own task (``scheduler._task_in_worker``: one backbone's videos kept between
tasks, heads packed as ``.keras`` bytes, saved in the worker). Once a unit's trial is kept,
one more task (the scheduler's ``output``) loads its packed heads in a worker and predicts
the fold's validation and test videos there; the driver chooses post-processing on the
validation probabilities and writes the fold folder, model files as the worker's bytes, so
it never imports TensorFlow (:attr:`RayRunner.outputs_in_workers`). Results are those of the sequential run bit for bit: seeds depend only
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
def _trial_task(cfg: Config, task: Any, progress: bool) -> Any:
    """One scheduler task (a trial, a refit, a unit's output) in a Ray worker; its packed result."""
    if progress and not logging.getLogger("mouse_pipeline").handlers:  # epochs shown by the driver
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger("mouse_pipeline").addHandler(handler)
        logging.getLogger("mouse_pipeline").setLevel(logging.INFO)
    ray_runtime.configure_worker(cfg.cluster.ray, deterministic=True)
    from ..sequences.scheduler import _task_in_worker

    return _task_in_worker(cfg, task, progress)


class RayRunner:
    """Trials fitted as Ray tasks; results in the order they complete (the scheduler sorts)."""

    #: The scheduler sends each unit's kept heads back to a worker for its fold's probabilities.
    outputs_in_workers = True

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

    def submit(self, key: Any, task: Any) -> None:
        if not self.pending:
            log.info("training trials on Ray, %d at a time", ray_runtime.workers_at_once(self.ray, self.settings))
        ref = _trial_task.options(**self.opts).remote(self.cfg_ref, task, self.progress)
        what = ("fold outputs" if task.output is not None else "refit" if task.refit_epochs is not None
                else f"trial {task.trial.index + 1}")
        self.pending[ref] = (key, f"{task.unit.label} {what}")

    def results(self) -> Iterator[tuple[Any, Any]]:
        while self.pending:  # tasks submitted meanwhile (refits) are waited for too
            (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
            key, what = self.pending.pop(ref)
            yield key, ray_runtime.get(self.ray, ref, what, self.settings)
