"""Stage 1 engine: every frame of every video through a frozen backbone, into the cache.

Order of work in :func:`extract`
--------------------------------
1. Resolve the videos (``data.videos``: folder, glob or file) and their sanitised ids
   (unique), fingerprint each video and, for pose crops, find and hash its DLC file
   (:func:`.planning.describe_videos`).
2. Decide per (backbone, video) whether the cache file is fresh (:func:`.planning.plan`);
   fresh ones are skipped without decoding anything (``overwrite`` re-extracts them).
3. Validate every video that must be extracted (true frame count by decoding, pose track
   length) *before* touching the cache: bad input leaves the cache exactly as it was, and
   all problems are reported together (:func:`.planning.validate_all`).
4. Per backbone with work to do: hold the lock on ``<cache>/<backbone>`` (and on
   ``<cache>/<backbone>+motion`` when its motion stream has work too), remove temporary
   files of killed runs, build the backbone once, and stream the videos through it
   (:class:`.streaming.VideoStream`). With ``cluster.ray.enabled`` (``--ray``), the locks of
   every backbone are held at once and each (backbone, video) is a Ray task
   (:mod:`mouse_pipeline.cluster.extract_ray`).
   ``pose`` in ``extract.backbones`` is the pose-feature stream: planned and validated
   with the others, computed from the pose files without a backbone
   (:mod:`.pose_stream`).

Streams
-------
Each entry of ``extract.backbones`` is a stream: a backbone, or ``<backbone>+motion``,
that backbone on motion images (:mod:`.motion`). The streams of one backbone share it:
it is built once, and a video whose files of both streams need work is decoded once for
both. Each stream's file is judged fresh on its own, so a video whose frames are cached
but whose motion file is stale is decoded for the motion stream only.

Names in ``extract.backbones`` that are imported streams (``cache import``:
:func:`.importing.imported_names`) are not extracted: nothing computes them here.

Steps 1-3 import no Keras: a re-run with every file fresh builds no model, takes no lock
and starts in well under a second.

Results
-------
:func:`extract` returns an :class:`ExtractSummary`: one :class:`VideoResult` per (backbone,
video) with status ``extracted``, ``up_to_date`` or ``failed`` (only with
``keep_going=True``; otherwise the first error is raised).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..config import Config
from ..devices import resolve_precision
from ..errors import ConfigError, PipelineError
from ..locks import acquire_lock
from .importing import imported_names
from .motion import is_motion_stream, stream_backbone
from .planning import (
    STATUSES,
    VideoJob,
    VideoResult,
    cache_table,
    describe_videos,
    expected_for,
    plan,
    validate,
    validate_all,
)
from .pose_stream import POSE_STREAM, PosePlan
from .store import cache_path, is_fresh, read_attrs, sanitize_stream
from .streaming import VideoStream
from .writer import remove_stale_temps

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    """What one :func:`extract` call did, per (backbone, video), in processing order."""

    results: list[VideoResult] = field(default_factory=list)
    seconds: float = 0.0
    #: wall time spent streaming videos through backbones (no probing, model building or
    #: compilation): the denominator of the aggregate rate when several videos decode at once
    stream_seconds: float = 0.0
    #: CPU time of this process (every thread) over the same streaming: what the work cost,
    #: less disturbed than wall time by other processes on a shared machine
    stream_cpu_seconds: float = 0.0

    def count(self, status: str) -> int:
        """Number of results with this status."""
        return sum(r.status == status for r in self.results)

    @property
    def counts(self) -> dict[str, int]:
        """``{status: n}`` for every status."""
        return {s: self.count(s) for s in STATUSES}

    @property
    def failed(self) -> list[VideoResult]:
        """The failed results (only with ``keep_going=True``)."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def frames_extracted(self) -> int:
        """Frames run through a backbone in this call."""
        return sum(r.frames for r in self.results if r.status == "extracted")

    def describe(self) -> str:
        """A few lines for the terminal."""
        c = self.counts
        lines = [f"{len(self.results)} video x backbone: {c['extracted']} extracted, "
                 f"{c['up_to_date']} up to date, {c['failed']} failed"]
        if c["extracted"]:
            rate = self.frames_extracted / self.seconds if self.seconds > 0 else float("nan")
            lines.append(f"extracted {self.frames_extracted} frames in {self.seconds:.1f} s "
                         f"({rate:.1f} frames/s overall)")
        lines += [f"FAILED {r.backbone}/{r.video_id}: {r.reason}" for r in self.failed]
        return "\n".join(lines)


@dataclass
class _Run:
    """What every backbone of one :func:`extract` call shares."""

    cfg: Config
    weights: str  # identity: imagenet, random or sha256:<hex>
    jobs: list[VideoJob]
    checked: dict[int, VideoJob]  # the validated jobs that need work, by index into jobs
    overwrite: bool
    keep_going: bool
    progress: bool
    summary: ExtractSummary
    overall: tqdm


def extract(cfg: Config, overwrite: bool = False, progress: bool = True,
            videos: list[Path] | None = None, keep_going: bool = False) -> ExtractSummary:
    """Extract and cache embeddings for every configured video and backbone.

    Parameters
    ----------
    cfg
        The config: ``data.videos``, ``data.crop`` and ``extract.*``.
    overwrite
        Re-extract even files that are up to date.
    progress
        Show progress bars (overall and per video, frames/s).
    videos
        Explicit video files instead of those named by ``data.videos``.
    keep_going
        When a video fails during extraction, record it as ``failed`` and go on with the
        others instead of raising. (Validation problems are always raised before any work.)

    Returns
    -------
    ExtractSummary
        One result per (backbone, video).

    Raises
    ------
    ConfigError
        Unknown backbone, bad input size, missing weights file.
    InputError
        Missing or unusable videos or pose files (all reported at once, nothing written),
        or a video that fails while it is extracted (without ``keep_going``).
    LockError
        Another live process is extracting into the same backbone folder.
    PipelineError
        ImageNet weights unavailable.
    """
    from ..backbones import resolve_input_size, weights_id

    t0 = time.perf_counter()
    names = list(dict.fromkeys(cfg.extract.backbones))
    imported = imported_names([cfg.extract.cache], names)
    if imported:
        log.info("%s: imported features (`cache import`), not extracted", ", ".join(imported))
        names = [n for n in names if n not in imported]
    motion = [n for n in names if is_motion_stream(n)]
    if motion and cfg.cluster.ray.enabled:
        raise ConfigError(f"extract.backbones: {', '.join(motion)}: motion streams are extracted locally "
                          "only (not on Ray yet); run extract for them without --ray (cluster.ray.enabled: false)")
    sizes = {name: resolve_input_size(name, cfg.extract.input_size) for name in names if name != POSE_STREAM}
    wid = weights_id(cfg.extract.weights)
    jobs = describe_videos(cfg, videos)
    todo = plan(cfg, jobs, sizes, wid, overwrite)  # nothing is decoded for fresh files
    needed = sorted({i for items in todo.values() for i, _ in items})
    checked = dict(zip(needed, validate_all(cfg, [jobs[i] for i in needed], progress), strict=True))
    pose = PosePlan(cfg, jobs, overwrite) if POSE_STREAM in names else None  # validated here too

    total = sum(checked[i].info.n_frames for items in todo.values() for i, _ in items)
    overall = tqdm(total=total, desc="extract", unit="frame", disable=not progress or total == 0,
                   position=0, dynamic_ncols=True)
    run = _Run(cfg, wid, jobs, checked, overwrite, keep_going, progress, ExtractSummary(), overall)
    groups: dict[str, list[str]] = {}  # backbone -> its streams, in config order
    for name in names:
        groups.setdefault(stream_backbone(name), []).append(name)
    try:
        if cfg.cluster.ray.enabled:  # every (backbone, video) a Ray task (mouse_pipeline.cluster)
            from ..cluster.extract_ray import extract_on_ray

            extract_on_ray(run, [n for n in names if n != POSE_STREAM], sizes, todo)
        for base, streams in groups.items():
            if base == POSE_STREAM:  # pose features: no backbone, no decoding (features/pose_stream.py)
                pose.run(run.summary.results, keep_going)
            elif not cfg.cluster.ray.enabled:
                _extract_backbone(run, base, streams, sizes[streams[0]], {s: dict(todo[s]) for s in streams})
    finally:
        overall.close()
    run.summary.seconds = time.perf_counter() - t0
    return run.summary


def _extract_backbone(run: _Run, base: str, streams: list[str], size: int,
                      todo: dict[str, dict[int, str]]) -> None:
    """All videos for one backbone's streams (``todo``: per stream, reason by job index),
    under the lock of each stream folder that has work."""
    busy = [s for s in streams if todo[s]]
    for name in streams:
        if not todo[name]:  # nothing to write: no lock, no model, no decoding
            for job in run.jobs:
                _up_to_date(run, name, job)
            log.info("%s: all %d videos up to date in %s", name, len(run.jobs), _folder(run, name))
    if not busy:
        return
    with contextlib.ExitStack() as locks:
        for name in sorted(busy):  # one order for every process: no deadlock between two
            folder = _folder(run, name)
            locks.enter_context(acquire_lock(folder))
            remove_stale_temps(folder, any_host=True)  # we hold the lock: no writer of it is alive
        per_video: dict[int, dict[str, str]] = {}
        for name in busy:
            for i, reason in _still_to_do(run, name, size, todo[name]).items():
                per_video.setdefault(i, {})[name] = reason
        if not per_video:
            return
        _stream_videos(run, base, size, [(run.checked[i], per_video[i]) for i in sorted(per_video)])


def _folder(run: _Run, name: str) -> Path:
    """A stream's cache folder."""
    return Path(run.cfg.extract.cache) / sanitize_stream(name)


def _up_to_date(run: _Run, name: str, job: VideoJob) -> None:
    target = cache_path(run.cfg.extract.cache, name, job.video_id)
    run.summary.results.append(VideoResult(job.video_id, name, "up_to_date", _cached_frames(target),
                                           path=target))


def _still_to_do(run: _Run, name: str, size: int, todo: dict[int, str]) -> dict[int, str]:
    """The planned work of one stream (reason by job index), looked at again under the
    lock: another process may have done some."""
    work: dict[int, str] = {}
    for i, job in enumerate(run.jobs):
        target = cache_path(run.cfg.extract.cache, name, job.video_id)
        reason = todo.get(i)
        if reason is not None and not run.overwrite and is_fresh(
                target, expected_for(run.cfg, name, run.weights, size, job))[0]:
            run.overall.total -= run.checked[i].info.n_frames  # written meanwhile by another process
            reason = None
        if reason is None:
            _up_to_date(run, name, job)
        else:
            work[i] = reason
    if not work:
        log.info("%s: all %d videos up to date in %s", name, len(run.jobs), _folder(run, name))
    return work


def _stream_videos(run: _Run, name: str, size: int, work: list[tuple[VideoJob, dict[str, str]]]) -> None:
    """Build the backbone once and stream ``work`` (each video with its streams and
    reasons) through it; results into the summary."""
    from ..backbones import build_backbone

    cfg = run.cfg
    precision = resolve_precision(cfg.extract.precision, warn=True)
    backbone = build_backbone(name, cfg.extract.weights, size, precision, cfg.extract.jit_compile)
    backbone.warm_up(cfg.extract.batch_size)
    spread_checked: set[str] = set()
    stream = VideoStream(backbone, cfg, cfg.extract.decode_workers, run.overall, run.progress)
    t_stream, t_cpu = time.perf_counter(), time.process_time()
    for result in stream.run(work, run.keep_going):
        run.summary.stream_seconds += time.perf_counter() - t_stream
        run.summary.stream_cpu_seconds += time.process_time() - t_cpu
        run.summary.results.append(result)
        if result.status == "extracted":
            log.info("%s/%s: %d frames in %.1f s (%.1f frames/s)", result.backbone, result.video_id,
                     result.frames, result.seconds, result.frames_per_s)
            if result.backbone not in spread_checked and result.frames > 1:
                _check_spread(backbone, result)
                spread_checked.add(result.backbone)
        t_stream, t_cpu = time.perf_counter(), time.process_time()  # the spread check is not streaming time


def _check_spread(backbone: Any, result: VideoResult) -> None:
    from ..dataset import open_features
    from .spread import embedding_spread, is_nearly_constant

    features = open_features(result.path, result.backbone)  # read a chunk at a time
    try:
        spread = embedding_spread(features)
    finally:
        features.close()
    log.info("%s (weights %s): embedding spread across the frames of %s: %.3g", result.backbone,
             backbone.weights_id, result.video_id, spread)
    if is_nearly_constant(spread):
        log.warning("%s: embeddings are nearly constant across frames (spread %.2g): nothing to learn "
                    "from; use imagenet weights or resnet50v2", result.backbone, spread)


def _cached_frames(path: Path) -> int:
    try:
        return int(read_attrs(path).get("n_frames", 0))
    except PipelineError:
        return 0


__all__ = ["STATUSES", "ExtractSummary", "VideoJob", "VideoResult", "cache_table", "describe_videos",
           "extract", "validate"]
