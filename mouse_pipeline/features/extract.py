"""Stage 1 engine: every frame of every video through a frozen backbone, into the cache.

Order of work in :func:`extract`
--------------------------------
1. Resolve the videos (``data.videos``: folder, glob or file) and their sanitised ids
   (unique), fingerprint each video and, for pose crops, find and hash its DLC file.
2. Decide per (backbone, video) whether the cache file is fresh (:func:`.store.is_fresh`);
   fresh ones are skipped without decoding anything (``overwrite`` re-extracts them).
3. Validate every video that must be extracted (true frame count by decoding, pose track
   length) *before* touching the cache: bad input leaves the cache exactly as it was, and
   all problems are reported together.
4. Per backbone with work to do: hold the lock on ``<cache>/<backbone>``, remove temporary
   files of killed runs, build the backbone once, and stream the videos through it.

Streaming
---------
Frames are decoded, cropped and resized in background threads, one per video (plus
``extract.frame_threads`` that crop and resize its frames while it decodes), with up to
``extract.decode_workers`` videos decoded at the same time, each into its own bounded
queue of ``extract.queue_batches`` batches. The main thread runs :meth:`Backbone.embed`
on the next batch of the *oldest* video that has one ready and appends the rows to that
video's :class:`~.store.CacheWriter`; a video's batches arrive in frame order. So the model
waits for decoding only when every decoder is slower than it, and videos still complete
one after the other (the oldest as fast as its decoder allows), which is what a killed run
keeps. An exception in a decoder (e.g. a frame that fails to decode) reaches the main
thread through the queue and is raised there; every decoder is stopped and joined and
every unfinished temporary file deleted before :func:`extract` returns or raises.

Results
-------
:func:`extract` returns an :class:`ExtractSummary`: one :class:`VideoResult` per (backbone,
video) with status ``extracted``, ``up_to_date`` or ``failed`` (only with
``keep_going=True``; otherwise the first error is raised).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..config import Config
from ..dataset import find_videos
from ..errors import CacheError, InputError, PipelineError
from ..locks import acquire_lock
from ..pose import find_pose_file, read_dlc
from ..video import Crop, VideoInfo, iter_batches, probe_video, video_fingerprint
from .store import (
    CacheEntry,
    cache_path,
    crop_json,
    expected_attrs,
    is_fresh,
    list_cache,
    read_attrs,
    read_embeddings,
    sanitize_id,
)
from .writer import CacheWriter, remove_stale_temps

log = logging.getLogger(__name__)

STATUSES = ("extracted", "up_to_date", "failed")
_DONE = object()  # a decoder's last item: every batch of its video was sent


@dataclass
class VideoResult:
    """What happened to one video for one backbone.

    Attributes
    ----------
    video_id, backbone
        Which cache file.
    status
        ``extracted``, ``up_to_date`` or ``failed``.
    frames
        Frames in the video (from the cache for up-to-date files).
    seconds
        Wall time of the extraction (0 when skipped).
    reason
        Why it was (re-)extracted (``not cached``, ``video changed (...)``, ``--overwrite``),
        or the error message of a failure.
    path
        The cache file.
    """

    video_id: str
    backbone: str
    status: str
    frames: int
    seconds: float = 0.0
    reason: str = ""
    path: Path | None = None

    @property
    def frames_per_s(self) -> float:
        """Extraction speed (NaN when nothing was extracted)."""
        return self.frames / self.seconds if self.status == "extracted" and self.seconds > 0 else float("nan")


@dataclass
class ExtractSummary:
    """What one :func:`extract` call did, per (backbone, video), in processing order."""

    results: list[VideoResult] = field(default_factory=list)
    seconds: float = 0.0
    #: wall time spent streaming videos through backbones (no probing, model building or
    #: compilation): the denominator of the aggregate rate when several videos decode at once
    stream_seconds: float = 0.0

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


@dataclass(frozen=True)
class VideoJob:
    """One video as extraction sees it: identity, crop, and (once validated) its facts."""

    video_id: str
    path: Path
    fingerprint: dict[str, Any]
    crop_settings: str
    pose_file: Path | None = None
    pose_sha256: str = ""
    info: VideoInfo | None = None
    crop: Crop | None = None


# --------------------------------------------------------------------------- planning


def _crop_settings(cfg: Config) -> str:
    c = cfg.data.crop
    if c.mode == "box":
        return crop_json({"mode": "box", "box": [int(v) for v in c.box]})
    if c.mode == "pose":
        return crop_json({"mode": "pose", "bodypart": c.bodypart, "min_likelihood": float(c.min_likelihood),
                          "size": int(c.size)})
    return crop_json({"mode": "none"})


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the pose file ({exc.strerror})") from None
    return digest.hexdigest()


def describe_videos(cfg: Config, videos: list[Path] | None = None) -> list[VideoJob]:
    """The videos of a config with ids, fingerprints and pose files (nothing decoded).

    Raises
    ------
    InputError
        No video found, two videos with the same sanitised id, an unreadable video, or
        (pose crops) not exactly one pose file for a video.
    """
    paths = list(videos) if videos is not None else find_videos(cfg.data.videos)
    if not paths:
        raise InputError(f"{cfg.data.videos}: no video to extract")
    settings = _crop_settings(cfg)
    jobs: list[VideoJob] = []
    seen: dict[str, Path] = {}
    problems: list[str] = []
    for path in paths:
        path = Path(path).absolute()
        vid = sanitize_id(path.stem)
        if vid in seen:
            raise InputError(f"{path}: video id {vid!r} is also the id of {seen[vid]}; rename one of them")
        seen[vid] = path
        try:
            if not path.is_file():
                raise InputError(f"{path}: video file does not exist; check data.videos")
            pose_file, pose_sha = None, ""
            if cfg.data.crop.mode == "pose":
                pose_file = find_pose_file(cfg.data.crop.pose, path.stem)
                pose_sha = _sha256(pose_file)
            jobs.append(VideoJob(vid, path, video_fingerprint(path), settings, pose_file, pose_sha))
        except InputError as exc:
            problems.append(str(exc))
    _raise_all(problems)
    return jobs


def _raise_all(problems: list[str]) -> None:
    """One InputError for every problem found (nothing when there is none)."""
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:
        raise InputError(f"{len(problems)} videos cannot be extracted: " + " | ".join(problems))


def _expected(cfg: Config, backbone: str, weights: str, size: int, job: VideoJob) -> dict[str, Any]:
    fps = job.info.fps if job.info is not None else None
    return expected_attrs(backbone=backbone, weights=weights, input_size=size, crop=job.crop_settings,
                          dtype=cfg.extract.dtype, precision=cfg.extract.precision, video_path=job.path,
                          fingerprint=job.fingerprint, fps=fps,
                          pose_file=job.pose_file.name if job.pose_file else "", pose_sha256=job.pose_sha256)


def validate(cfg: Config, job: VideoJob) -> VideoJob:
    """Decode a video once (true frame count) and build its crop; InputError when unusable."""
    info = probe_video(job.path)
    c = cfg.data.crop
    if c.mode == "box":
        crop = Crop("box", box=tuple(c.box))
    elif c.mode == "pose":
        centres = read_dlc(job.pose_file, c.bodypart, c.min_likelihood)
        if len(centres) != info.n_frames:
            raise InputError(f"{job.pose_file}: {len(centres)} pose rows but {job.path} has "
                             f"{info.n_frames} frames; use the pose file made from this video")
        crop = Crop("pose", size=c.size, centres=centres)
    else:
        crop = Crop.none()
    return replace(job, info=info, crop=crop)


def _validate_all(cfg: Config, jobs: list[VideoJob], progress: bool) -> list[VideoJob]:
    """Validate videos (``decode_workers`` at a time); every problem reported in one InputError."""
    results: dict[int, VideoJob] = {}
    problems: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, cfg.extract.decode_workers)) as pool:
        futures = {pool.submit(validate, cfg, job): i for i, job in enumerate(jobs)}
        for future in tqdm(as_completed(futures), total=len(futures), desc="checking videos", unit="video",
                           disable=not progress or len(jobs) < 2):
            i = futures[future]
            try:
                results[i] = future.result()
            except InputError as exc:
                problems[i] = str(exc)
    _raise_all([problems[i] for i in sorted(problems)])
    return [results[i] for i in range(len(jobs))]


# --------------------------------------------------------------------------- streaming


def _put(q: queue.Queue, item: Any, ready: threading.Semaphore, stop: threading.Event) -> bool:
    """Put into a bounded queue and signal it, unless asked to stop; False when stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
        except queue.Full:
            continue
        ready.release()
        return True
    return False


def _decode(job: VideoJob, batch_size: int, out_size: int, q: queue.Queue, ready: threading.Semaphore,
            stop: threading.Event, frame_threads: int = 1) -> None:
    """Decoder thread: every batch of one video into its queue, then _DONE (or the exception)."""
    batches = iter_batches(job.path, batch_size, job.crop, out_size, threads=frame_threads)
    try:
        for batch in batches:
            if not _put(q, batch, ready, stop):
                return
        _put(q, _DONE, ready, stop)
    except BaseException as exc:  # handed to the main thread, never lost
        _put(q, exc, ready, stop)
    finally:
        batches.close()


@dataclass
class _Active:
    job: VideoJob
    reason: str
    writer: CacheWriter
    queue: queue.Queue
    thread: threading.Thread
    started: float
    bar: tqdm


class _Stream:
    """Up to ``workers`` decoding videos, each with its own bounded queue; see the module notes.

    The main thread always takes the next batch of the *oldest* video that has one ready,
    so videos complete in order, as early as their decoder allows (what a killed run keeps),
    while spare model time goes to the videos decoded behind it.
    """

    def __init__(self, backbone: Any, cfg: Config, workers: int, overall: tqdm, progress: bool):
        self.backbone, self.cfg, self.workers = backbone, cfg, max(1, workers)
        self.overall, self.progress = overall, progress
        self.depth = max(1, cfg.extract.queue_batches)
        self.ready = threading.Semaphore(0)  # one release per item put into any queue
        self.stop = threading.Event()
        self.active: dict[int, _Active] = {}  # in start order

    def _start(self, slot: int, job: VideoJob, reason: str) -> None:
        attrs = _expected(self.cfg, self.backbone.name, self.backbone.weights_id, self.backbone.input_size, job)
        path = cache_path(self.cfg.extract.cache, self.backbone.name, job.video_id)
        writer = CacheWriter(path, job.info.n_frames, self.backbone.dim, self.cfg.extract.dtype, attrs)
        q: queue.Queue = queue.Queue(maxsize=self.depth)
        thread = threading.Thread(target=_decode, name=f"decode-{job.video_id}", daemon=True,
                                  args=(job, self.cfg.extract.batch_size, self.backbone.input_size, q,
                                        self.ready, self.stop, self.cfg.extract.frame_threads))
        bar = tqdm(total=job.info.n_frames, desc=f"{self.backbone.name} {job.video_id}", unit="frame",
                   leave=False, disable=not self.progress, position=1 + slot, dynamic_ncols=True)
        try:
            writer.__enter__()
        except BaseException:
            bar.close()
            raise
        self.active[slot] = _Active(job, reason, writer, q, thread, time.perf_counter(), bar)
        log.info("%s/%s: extracting %d frames (%s)", self.backbone.name, job.video_id,
                 job.info.n_frames, reason)
        thread.start()

    def _next_item(self) -> tuple[int, Any]:
        """The next item of the oldest video that has one (waits for one to arrive)."""
        while not self.ready.acquire(timeout=1.0):
            # every decoder signals its last item before it ends: look once more, then give up
            if not any(a.thread.is_alive() for a in self.active.values()):
                if self.ready.acquire(blocking=False):
                    break
                raise RuntimeError("decoder threads ended without a result")
        for slot, act in self.active.items():
            try:
                return slot, act.queue.get_nowait()
            except queue.Empty:
                continue
        raise RuntimeError("a decoder signalled an item that is not there")

    def _finish(self, slot: int, error: BaseException | None) -> float:
        act = self.active.pop(slot)
        act.thread.join()
        act.bar.close()
        seconds = time.perf_counter() - act.started
        if error is None:  # the attributes must describe the bytes that were decoded
            try:
                if video_fingerprint(act.job.path) != act.job.fingerprint:
                    error = InputError(f"{act.job.path}: the video changed while it was being read; "
                                       "run extract again")
            except InputError as exc:
                error = exc
        if error is not None:
            act.writer.__exit__(type(error), error, error.__traceback__)
            raise error
        act.writer.attrs["extract_frames_per_s"] = act.job.info.n_frames / max(seconds, 1e-9)
        act.writer.__exit__(None, None, None)
        return seconds

    def run(self, todo: list[tuple[VideoJob, str]], keep_going: bool) -> Iterator[VideoResult]:
        """Yield a :class:`VideoResult` per video as it completes (or fails, with keep_going)."""
        pending = list(todo)
        free = list(range(self.workers))[::-1]
        try:
            while pending or self.active:
                while pending and free:
                    job, reason = pending.pop(0)
                    self._start(free.pop(), job, reason)
                slot, item = self._next_item()
                act = self.active[slot]
                if isinstance(item, np.ndarray):
                    act.writer.write(self.backbone.embed(item))
                    act.bar.update(len(item))
                    self.overall.update(len(item))
                    continue
                job, reason = act.job, act.reason
                path = cache_path(self.cfg.extract.cache, self.backbone.name, job.video_id)
                free.append(slot)
                try:
                    seconds = self._finish(slot, item if isinstance(item, BaseException) else None)
                except (InputError, CacheError) as exc:
                    if not keep_going:
                        raise
                    log.error("%s/%s: failed: %s", self.backbone.name, job.video_id, exc)
                    yield VideoResult(job.video_id, self.backbone.name, "failed", job.info.n_frames,
                                      reason=str(exc), path=path)
                    continue
                yield VideoResult(job.video_id, self.backbone.name, "extracted", job.info.n_frames,
                                  seconds, reason=reason, path=path)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        """Stop and join every decoder, delete every unfinished temporary file."""
        self.stop.set()
        for act in self.active.values():
            while act.thread.is_alive():
                try:
                    act.queue.get_nowait()
                except queue.Empty:
                    act.thread.join(timeout=0.05)
            act.bar.close()
            act.writer.__exit__(RuntimeError, RuntimeError("extraction stopped"), None)
        self.active.clear()


# --------------------------------------------------------------------------- engine


def _check_spread(backbone: Any, result: VideoResult) -> None:
    from ..backbones import embedding_spread, is_nearly_constant

    spread = embedding_spread(read_embeddings(result.path))
    log.info("%s (weights %s): embedding spread across the frames of %s: %.3g", backbone.name,
             backbone.weights_id, result.video_id, spread)
    if is_nearly_constant(spread):
        log.warning("%s: embeddings are nearly constant across frames (spread %.2g): nothing to learn "
                    "from; use imagenet weights or resnet50v2", backbone.name, spread)


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
    sizes = {name: resolve_input_size(name, cfg.extract.input_size) for name in names}
    wid = weights_id(cfg.extract.weights)
    jobs = describe_videos(cfg, videos)

    # Which (backbone, video) need work; nothing is decoded for fresh files.
    todo: dict[str, list[tuple[int, str]]] = {name: [] for name in names}
    for name in names:
        for i, job in enumerate(jobs):
            fresh, reason = is_fresh(cache_path(cfg.extract.cache, name, job.video_id),
                                     _expected(cfg, name, wid, sizes[name], job))
            if overwrite or not fresh:
                todo[name].append((i, "--overwrite" if fresh else reason))
    needed = sorted({i for items in todo.values() for i, _ in items})
    checked = dict(zip(needed, _validate_all(cfg, [jobs[i] for i in needed], progress), strict=True))

    summary = ExtractSummary()
    total = sum(checked[i].info.n_frames for items in todo.values() for i, _ in items)
    overall = tqdm(total=total, desc="extract", unit="frame", disable=not progress or total == 0,
                   position=0, dynamic_ncols=True)
    try:
        for name in names:
            _extract_backbone(cfg, name, sizes[name], wid, jobs, checked, dict(todo[name]), overwrite,
                              keep_going, summary, overall, progress)
    finally:
        overall.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _extract_backbone(cfg: Config, name: str, size: int, wid: str, jobs: list[VideoJob],
                      checked: dict[int, VideoJob], todo: dict[int, str], overwrite: bool,
                      keep_going: bool, summary: ExtractSummary, overall: tqdm, progress: bool) -> None:
    """All videos for one backbone, under the lock of its cache folder."""
    from ..backbones import build_backbone

    folder = Path(cfg.extract.cache) / name
    if not todo:  # nothing to write: no lock, no model, no decoding
        for job in jobs:
            target = cache_path(cfg.extract.cache, name, job.video_id)
            summary.results.append(VideoResult(job.video_id, name, "up_to_date", _cached_frames(target),
                                               path=target))
        log.info("%s: all %d videos up to date in %s", name, len(jobs), folder)
        return
    with acquire_lock(folder):
        remove_stale_temps(folder, any_host=True)  # we hold the lock: no writer of it is alive
        work: list[tuple[VideoJob, str]] = []
        for i, job in enumerate(jobs):
            target = cache_path(cfg.extract.cache, name, job.video_id)
            reason = todo.get(i)
            if reason is not None and not overwrite and is_fresh(target, _expected(cfg, name, wid, size, job))[0]:
                overall.total -= checked[i].info.n_frames  # written meanwhile by another process
                reason = None
            if reason is None:
                summary.results.append(VideoResult(job.video_id, name, "up_to_date", _cached_frames(target),
                                                   path=target))
            else:
                work.append((checked[i], reason))
        if not work:
            log.info("%s: all %d videos up to date in %s", name, len(jobs), folder)
            return
        backbone = build_backbone(name, cfg.extract.weights, size, cfg.extract.precision,
                                  cfg.extract.jit_compile)
        backbone.warm_up(cfg.extract.batch_size)
        spread_checked = False
        t_stream = time.perf_counter()
        for result in _Stream(backbone, cfg, cfg.extract.decode_workers, overall, progress).run(work, keep_going):
            summary.stream_seconds += time.perf_counter() - t_stream
            t_stream = time.perf_counter()
            summary.results.append(result)
            if result.status != "extracted":
                continue
            log.info("%s/%s: %d frames in %.1f s (%.1f frames/s)", name, result.video_id, result.frames,
                     result.seconds, result.frames_per_s)
            if not spread_checked and result.frames > 1:
                _check_spread(backbone, result)
                spread_checked = True
            t_stream = time.perf_counter()  # the spread check is not streaming time


def _cached_frames(path: Path) -> int:
    try:
        return int(read_attrs(path).get("n_frames", 0))
    except PipelineError:
        return 0


# --------------------------------------------------------------------------- cache listing


def cache_table(cache_root: str | Path, cfg: Config | None = None) -> list[dict[str, Any]]:
    """Rows for ``mouse-pipeline cache ls``: what is cached and whether it is still valid.

    Parameters
    ----------
    cache_root
        The cache folder.
    cfg
        When given, files are also judged against its settings (weights, input size,
        crop, pose files, dtype, precision); otherwise only against their video and the
        backbone folder they are in (a file made by another backbone is stale).

    Returns
    -------
    list of dict
        Keys ``video, backbone, frames, dim, dtype, weights, size_mb, status, reason``.
        ``status`` is ``fresh``; ``stale`` (the video or the settings changed, the file was
        made by another backbone, or it is unreadable; ``reason`` says which); or
        ``unknown`` (the video is no longer at the recorded ``video_path``).
    """
    rows = []
    for entry in list_cache(cache_root):
        status, reason = _entry_status(entry, cfg)
        rows.append({"video": entry.video_id, "backbone": entry.backbone, "frames": entry.n_frames,
                     "dim": entry.dim, "dtype": entry.dtype,
                     "weights": str(entry.attrs.get("weights", "?"))[:16],
                     "size_mb": f"{entry.bytes / 1e6:.1f}", "status": status, "reason": reason})
    return rows


def _entry_status(entry: CacheEntry, cfg: Config | None) -> tuple[str, str]:
    if entry.error is not None:
        return "stale", "unreadable"
    made_by = entry.attrs.get("backbone")
    if made_by != entry.backbone:  # e.g. copied from another backbone's folder
        return "stale", f"holds {made_by} embeddings, not {entry.backbone}"
    video = Path(str(entry.attrs.get("video_path", "")))
    if not entry.attrs.get("video_path") or not video.is_file():
        return "unknown", "video not found"
    fingerprint = video_fingerprint(video)
    expected: dict[str, Any] = {"video_size": fingerprint["size"], "video_mtime_ns": fingerprint["mtime_ns"],
                                "video_sha256": fingerprint["sha256"]}
    if cfg is not None:
        from ..backbones import resolve_input_size, weights_id

        job = VideoJob(entry.video_id, video, fingerprint, _crop_settings(cfg))
        try:
            if cfg.data.crop.mode == "pose":
                pose = find_pose_file(cfg.data.crop.pose, video.stem)
                job = replace(job, pose_file=pose, pose_sha256=_sha256(pose))
            size = resolve_input_size(entry.backbone, cfg.extract.input_size)
            expected = _expected(cfg, entry.backbone, weights_id(cfg.extract.weights), size, job)
        except PipelineError as exc:
            return "stale", str(exc)[:80]
    fresh, reason = is_fresh(entry.path, expected)
    return ("fresh", "") if fresh else ("stale", reason)


__all__ = ["ExtractSummary", "VideoJob", "VideoResult", "cache_table", "describe_videos", "extract",
           "validate"]
