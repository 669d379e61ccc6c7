"""Stage 1 on Ray: every (backbone, video) still to extract is one Ray task.

The driver (:func:`extract_on_ray`, called by :func:`.features.extract.extract` once it has
planned and validated everything, as a local run does) takes the lock of every backbone
folder with work, removes temporary files of killed runs, looks at the plan again under
the locks, and only then connects to Ray and submits one task per (backbone, video), in
plan order. It imports no TensorFlow.

A task runs in a worker process that keeps one built backbone between its tasks (built
again only when a task asks for another backbone or setting). It streams its one video
through that backbone with the very code of a local run (:class:`.streaming.VideoStream`,
so the same batches, the same :class:`.writer.CacheWriter`, the same attributes) into the
shared cache folder: a file with the final name is always whole. A task whose worker dies
(killed, out of memory, node lost) is retried by Ray (``cluster.ray.max_retries``); its
half-written temporary file is removed by the driver, which still holds the lock, at the
end. An error the task raises (a video that fails to decode) is not retried: it stops the
run as locally (or is a ``failed`` result with ``keep_going``).

Progress: tasks report their frames to one small actor; the driver shows one bar over
every frame to extract (frames/s, ETA) and logs each video as it completes, and the
summary is in the order of a local run.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..config import Config
from ..features.planning import VideoJob, VideoResult
from ..features.writer import remove_stale_temps
from ..locks import acquire_lock
from . import ray_runtime

ray = ray_runtime.require_ray()  # a one-line error without the cluster extra
log = logging.getLogger(__name__)

#: Test hook: ``<frames>:<marker file>`` makes the first task to pass that many frames
#: SIGKILL its own worker process once (the marker file says it happened), to test retries.
KILL_HOOK_ENV = "MOUSE_PIPELINE_TEST_KILL_WORKER"
_REPORT_S = 0.25


# --------------------------------------------------------------------------- in the worker


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Frames done so far per task (set, not added: a retried task starts again from 0)."""

    def __init__(self) -> None:
        self.done: dict[int, int] = {}

    def set(self, key: int, frames: int) -> None:
        self.done[key] = frames

    def total(self) -> int:
        return sum(self.done.values())


class _Reporter:
    """What :class:`VideoStream` updates as its overall bar: frames to the board, the kill hook."""

    def __init__(self, board: Any, key: int, kill: str | None) -> None:
        self.board, self.key, self.frames, self.sent = board, key, 0, 0.0
        self.kill_after, self.marker = None, None
        if kill:
            after, _, marker = kill.partition(":")
            self.kill_after, self.marker = int(after), Path(marker)

    def update(self, n: int) -> None:
        self.frames += n
        if self.kill_after is not None and self.frames >= self.kill_after:
            self.kill_after = None
            try:  # only the first task to get here (O_EXCL), and only once
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        if self.board is not None and time.monotonic() - self.sent > _REPORT_S:
            self.flush()

    def flush(self) -> None:
        if self.board is not None:
            self.board.set.remote(self.key, self.frames)
            self.sent = time.monotonic()


_BACKBONE: tuple[tuple, Any] | None = None  # the worker's one built backbone, with its settings


def _worker_backbone(cfg: Config, name: str, size: int) -> Any:
    global _BACKBONE
    from ..backbones import build_backbone
    from ..devices import resolve_precision

    precision = resolve_precision(cfg.extract.precision, warn=_BACKBONE is None)
    key = (name, cfg.extract.weights, size, precision, cfg.extract.jit_compile, cfg.extract.batch_size)
    if _BACKBONE is None or _BACKBONE[0] != key:
        _BACKBONE = None  # the previous one is freed before the next is built
        backbone = build_backbone(name, cfg.extract.weights, size, precision, cfg.extract.jit_compile)
        backbone.warm_up(cfg.extract.batch_size)
        _BACKBONE = (key, backbone)
    return _BACKBONE[1]


def _spread(backbone: Any, path: Path) -> float:
    from ..dataset import open_features
    from ..features.spread import embedding_spread

    features = open_features(path, backbone.name)
    try:
        return float(embedding_spread(features))
    finally:
        features.close()


@ray.remote
def _extract_task(cfg: Config, name: str, size: int, job: VideoJob, reason: str, key: int,
                  keep_going: bool, check_spread: bool, board: Any,
                  kill: str | None) -> tuple[VideoResult, float | None]:
    """One video through one backbone into the cache; its result and (when asked) spread."""
    from ..features.streaming import VideoStream

    ray_runtime.configure_worker(cfg.cluster.ray, deterministic=False)
    backbone = _worker_backbone(cfg, name, size)
    reporter = _Reporter(board, key, kill)
    stream = VideoStream(backbone, cfg, 1, reporter, progress=False)
    (result,) = list(stream.run([(job, {name: reason})], keep_going))  # the stream of one backbone
    reporter.flush()
    spread = _spread(backbone, result.path) if check_spread and result.status == "extracted" \
        and result.frames > 1 else None
    return result, spread


# --------------------------------------------------------------------------- the driver


def extract_on_ray(run: Any, names: list[str], sizes: dict[str, int], todo: dict[str, list]) -> None:
    """Extract the plan ``todo`` of every backbone on Ray; results into ``run.summary``.

    ``run`` is :func:`.features.extract.extract`'s ``_Run`` (config, validated jobs, bar).
    """
    from ..features.extract import _still_to_do, _up_to_date

    cfg = run.cfg
    work: dict[str, list[tuple[VideoJob, str]]] = {}
    with ExitStack() as stack:
        for name in names:
            folder = Path(cfg.extract.cache) / name
            if not todo[name]:  # nothing to write: no lock
                for job in run.jobs:
                    _up_to_date(run, name, job)
                log.info("%s: all %d videos up to date in %s", name, len(run.jobs), folder)
                continue
            stack.enter_context(acquire_lock(folder))
            remove_stale_temps(folder, any_host=True)  # we hold the lock: no writer of it is alive
            w = [(run.checked[i], reason) for i, reason in
                 _still_to_do(run, name, sizes[name], dict(todo[name])).items()]  # logs when none is left
            if w:
                work[name] = w
        if not work:
            return
        ray_mod = stack.enter_context(ray_runtime.connect(cfg.cluster.ray, log_to_driver=True))
        try:
            _run_tasks(ray_mod, run, work, sizes)
        finally:
            for name in work:  # temporary files of workers that died (their task was retried)
                remove_stale_temps(Path(cfg.extract.cache) / name, any_host=True)
    order = {(b, j.video_id): k for k, (b, j) in enumerate((b, j) for b in names for j in run.jobs)}
    run.summary.results.sort(key=lambda r: (names.index(r.backbone), r.status != "up_to_date",
                                            order[(r.backbone, r.video_id)]))


def _run_tasks(ray_mod: Any, run: Any, work: dict[str, list[tuple[VideoJob, str]]],
               sizes: dict[str, int]) -> None:
    cfg, settings = run.cfg, run.cfg.cluster.ray
    opts = ray_runtime.worker_options(ray_mod, settings)
    n_tasks = sum(len(w) for w in work.values())
    log.info("extracting %d video x backbone on Ray, %d at a time", n_tasks,
             min(n_tasks, ray_runtime.workers_at_once(ray_mod, settings)))
    board = ProgressBoard.remote() if not run.overall.disable else None
    cfg_ref = ray_mod.put(cfg)
    kill = os.environ.get(KILL_HOOK_ENV) or None
    pending: dict[Any, tuple[str, VideoJob]] = {}
    key = 0
    for name, items in work.items():
        for k, (job, reason) in enumerate(items):
            ref = _extract_task.options(**opts).remote(cfg_ref, name, sizes[name], job, reason, key,
                                                       run.keep_going, k == 0, board, kill)
            pending[ref] = (name, job)
            key += 1
    t0, shown = time.perf_counter(), 0
    try:
        while pending:
            done, _ = ray_mod.wait(list(pending), num_returns=1, timeout=0.5)
            if board is not None:
                total = ray_mod.get(board.total.remote())
                run.overall.update(max(0, total - shown))
                shown = max(shown, total)
            for ref in done:
                name, job = pending.pop(ref)
                result, spread = ray_runtime.get(ray_mod, ref, f"extracting {name}/{job.video_id}", settings)
                _record(run, name, result, spread)
    except BaseException:
        for ref in pending:
            ray_mod.cancel(ref, force=True)
        raise
    finally:
        run.summary.stream_seconds += time.perf_counter() - t0


def _record(run: Any, name: str, result: VideoResult, spread: float | None) -> None:
    run.summary.results.append(result)
    if result.status == "failed":
        log.error("%s/%s: failed: %s", name, result.video_id, result.reason)
        return
    log.info("%s/%s: %d frames in %.1f s (%.1f frames/s)", name, result.video_id, result.frames,
             result.seconds, result.frames_per_s)
    if spread is not None:
        from ..features.spread import is_nearly_constant

        log.info("%s (weights %s): embedding spread across the frames of %s: %.3g", name, run.weights,
                 result.video_id, spread)
        if is_nearly_constant(spread):
            log.warning("%s: embeddings are nearly constant across frames (spread %.2g): nothing to "
                        "learn from; use imagenet weights or resnet50v2", name, spread)
