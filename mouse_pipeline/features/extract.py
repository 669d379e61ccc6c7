"""Stage 1 engine: every frame of every video through a frozen backbone, into the cache.

For each backbone (built once) and each video: skip the video when its cache file is up
to date, otherwise decode, crop and resize frames in a background thread that keeps up
to ``extract.queue_batches`` batches ready in a bounded queue, so the model never waits
on the video, and write the embeddings with :class:`~.store.CacheWriter` (atomic).
Every video is checked before anything is written, so bad input leaves the cache as it was.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..config import Config
from ..dataset import find_videos
from ..errors import InputError
from ..locks import acquire_lock
from ..pose import find_pose_file, read_dlc
from ..video import Crop, VideoInfo, iter_batches, probe_video, video_fingerprint
from .store import (
    CacheWriter,
    cache_path,
    is_fresh,
    list_cache,
    read_attrs,
    remove_stale_temps,
    sanitize_id,
)

log = logging.getLogger(__name__)

_DONE = object()


@dataclass
class VideoResult:
    video_id: str
    backbone: str
    status: str  # extracted | up_to_date
    frames: int
    seconds: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class ExtractSummary:
    """What one ``extract`` call did, per video and backbone."""

    results: list[VideoResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def describe(self) -> str:
        """One-paragraph summary for the terminal."""
        done = [r for r in self.results if r.status == "extracted"]
        frames = sum(r.frames for r in done)
        secs = sum(r.seconds for r in done)
        lines = [f"{len(self.results)} video x backbone: {len(done)} extracted, "
                 f"{self.count('up_to_date')} up to date"]
        if done:
            lines.append(f"extracted {frames} frames in {secs:.1f} s ({frames / max(secs, 1e-9):.1f} frames/s)")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Job:
    video_id: str
    info: VideoInfo
    crop: Crop
    crop_json: str


def _crop_for(cfg: Config, info: VideoInfo) -> tuple[Crop, str]:
    c = cfg.data.crop
    if c.mode == "none":
        return Crop.none(), json.dumps({"mode": "none"})
    if c.mode == "box":
        return Crop("box", box=tuple(c.box)), json.dumps({"mode": "box", "box": list(c.box)})
    pose_file = find_pose_file(c.pose, info.path.stem)
    centres = read_dlc(pose_file, c.bodypart, c.min_likelihood)
    if len(centres) != info.n_frames:
        raise InputError(f"{pose_file}: {len(centres)} pose rows but {info.path} has "
                         f"{info.n_frames} frames; use the pose file made from this video")
    fp = video_fingerprint(pose_file)
    desc = {"mode": "pose", "size": c.size, "bodypart": c.bodypart,
            "min_likelihood": c.min_likelihood, "pose_sha256": fp["sha256"], "pose_size": fp["size"]}
    return Crop("pose", size=c.size, centres=centres), json.dumps(desc, sort_keys=True)


def plan(cfg: Config, videos: list[Path] | None = None, progress: bool = False) -> list[_Job]:
    """Probe every video (true frame count) and resolve its crop before anything is written."""
    paths = videos if videos is not None else find_videos(cfg.data.videos)
    jobs, seen = [], {}
    for path in tqdm(paths, desc="checking videos", unit="video", disable=not progress or len(paths) < 2):
        vid = sanitize_id(path.stem)
        if vid in seen:
            raise InputError(f"{path}: video id {vid!r} is also the id of {seen[vid]}; rename one")
        seen[vid] = path
        info = probe_video(path)
        crop, crop_json = _crop_for(cfg, info)
        jobs.append(_Job(vid, info, crop, crop_json))
    return jobs


def _expected_attrs(cfg: Config, backbone, job: _Job) -> dict:
    fp = video_fingerprint(job.info.path)
    return {"backbone": backbone.name, "weights": backbone.weights_id,
            "input_size": backbone.input_size, "crop": job.crop_json, "dtype": cfg.extract.dtype,
            "precision": cfg.extract.precision, "video_path": str(job.info.path),
            "video_size": fp["size"], "video_mtime_ns": fp["mtime_ns"], "video_sha256": fp["sha256"],
            "fps": float(cfg.data.fps or job.info.fps)}


def prefetch(batches: Iterator[np.ndarray], depth: int) -> Iterator[np.ndarray]:
    """Run an iterator in a background thread, ``depth`` items ahead (bounded memory).

    Exceptions raised in the thread are re-raised in the caller; stopping early (an error
    in the consumer) stops the thread.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, never lost
            q.put(exc)

    thread = threading.Thread(target=produce, name="decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def _extract_one(cfg: Config, backbone, job: _Job, attrs: dict, bar: tqdm | None) -> VideoResult:
    path = cache_path(cfg.extract.cache, backbone.name, job.video_id)
    t0 = time.perf_counter()
    frames = iter_batches(job.info.path, cfg.extract.batch_size, job.crop, backbone.input_size)
    with CacheWriter(path, job.info.n_frames, backbone.dim, cfg.extract.dtype, attrs) as writer:
        for batch in prefetch(frames, cfg.extract.queue_batches):
            writer.write(backbone.embed(batch))
            if bar is not None:
                bar.update(len(batch))
        seconds = time.perf_counter() - t0
        writer.attrs["extract_frames_per_s"] = job.info.n_frames / max(seconds, 1e-9)
    return VideoResult(job.video_id, backbone.name, "extracted", job.info.n_frames, seconds)


def extract(cfg: Config, overwrite: bool = False, progress: bool = True,
            videos: list[Path] | None = None) -> ExtractSummary:
    """Extract and cache embeddings for every configured video and backbone.

    Parameters
    ----------
    cfg
        The config (``data.videos``, ``data.crop``, ``extract.*``).
    overwrite
        Re-extract even files that are up to date.
    progress
        Show progress bars.
    videos
        Explicit video files (default: those named by ``data.videos``).
    """
    from ..backbones import build_backbone, embedding_spread, get_spec

    for name in cfg.extract.backbones:
        get_spec(name)  # unknown names fail before any work
    jobs = plan(cfg, videos, progress)
    summary = ExtractSummary()
    total = sum(j.info.n_frames for j in jobs) * len(cfg.extract.backbones)
    overall = tqdm(total=total, desc="all videos", unit="frame", disable=not progress, position=0)
    try:
        for name in cfg.extract.backbones:
            folder = Path(cfg.extract.cache) / name
            with acquire_lock(folder):
                remove_stale_temps(folder)
                backbone = build_backbone(name, cfg.extract.weights, cfg.extract.input_size,
                                          cfg.extract.precision, cfg.extract.jit_compile)
                checked_spread = False
                for job in jobs:
                    attrs = _expected_attrs(cfg, backbone, job)
                    target = cache_path(cfg.extract.cache, name, job.video_id)
                    fresh, reason = is_fresh(target, attrs)
                    if fresh and not overwrite:
                        summary.results.append(VideoResult(job.video_id, name, "up_to_date", job.info.n_frames))
                        overall.update(job.info.n_frames)
                        log.debug("%s/%s: up to date", name, job.video_id)
                        continue
                    if target.exists() and reason.startswith("video changed"):
                        old_path = read_attrs(target).get("video_path")
                        if old_path != str(job.info.path):
                            log.warning("%s/%s: replacing cached embeddings of %s with those of %s "
                                        "(same video id)", name, job.video_id, old_path, job.info.path)
                    if target.exists():
                        log.info("%s/%s: re-extracting (%s)", name, job.video_id,
                                 "--overwrite" if fresh else reason)
                    bar = tqdm(total=job.info.n_frames, desc=f"{name} {job.video_id}", unit="frame",
                               leave=False, disable=not progress, position=1)
                    try:
                        result = _extract_one(cfg, backbone, job, attrs, bar)
                    finally:
                        bar.close()
                    overall.update(job.info.n_frames)
                    summary.results.append(result)
                    log.info("%s/%s: %d frames at %.1f frames/s", name, job.video_id,
                             result.frames, result.frames_per_s)
                    if not checked_spread:
                        checked_spread = True
                        _check_spread(target, name, cfg.extract.weights, embedding_spread)
    finally:
        overall.close()
    return summary


def _check_spread(path: Path, name: str, weights: str, spread_fn) -> None:
    from .store import read_embeddings

    spread = spread_fn(read_embeddings(path))
    log.info("%s: embedding spread across frames %.3g (weights: %s)", name, spread, weights)
    if not spread > 1e-6:
        log.warning("%s: embeddings are nearly constant across frames (spread %.2g): nothing to "
                    "learn from; use imagenet weights, or resnet50v2 when weights are random",
                    name, spread)


def cache_table(cache_root: str | Path, cfg: Config | None = None) -> list[dict]:
    """Rows for ``mouse-pipeline cache ls``: what is cached and whether it is stale.

    A file is stale when its video changed (size, mtime or content hash) or is gone.
    """
    rows = []
    for entry in list_cache(cache_root):
        attrs = entry.attrs
        video = Path(str(attrs.get("video_path", "")))
        if not video.is_file():
            status = "video missing"
        else:
            fp = video_fingerprint(video)
            same = (fp["size"] == attrs.get("video_size") and fp["mtime_ns"] == attrs.get("video_mtime_ns")
                    and fp["sha256"] == attrs.get("video_sha256"))
            status = "fresh" if same else "stale (video changed)"
        rows.append({"video": entry.video_id, "backbone": entry.backbone, "frames": entry.n_frames,
                     "dim": entry.dim, "dtype": entry.dtype, "weights": str(attrs.get("weights", "?"))[:16],
                     "size_mb": f"{entry.bytes / 1e6:.1f}", "status": status})
    return rows


__all__ = ["ExtractSummary", "VideoResult", "cache_table", "extract", "plan", "prefetch", "read_attrs"]
