"""The ``pose`` stream of stage 1: pose features from each video's pose file, cached like a backbone.

When ``extract.backbones`` lists ``pose``, :func:`mouse_pipeline.features.extract.extract`
hands it to :class:`PosePlan`: no frame is decoded for the features (only the video's
true frame count is, to check the pose file against it), no model is built.

Cache files
-----------
``<cache>/pose/<video_id>.h5``, the contract of :mod:`.store` (dataset ``embeddings``,
``(n_frames, n_features)``; written by :class:`.writer.CacheWriter` under the folder's
lock). The attributes a backbone file has keep their meaning, with ``backbone`` ``pose``,
``weights`` ``none``, ``input_size`` 0, ``crop`` ``{"mode": "none"}`` (features do not
depend on the crop) and ``precision`` ``float64`` (computed in float64, stored in
``extract.dtype``). Added:

================  ================================================================
pose_features     JSON (sorted keys) of the settings: requested ``bodyparts`` (null:
                  all), ``axis``, ``centre``, ``angles``, ``min_likelihood``,
                  ``individual``, ``fps`` (``data.fps``, the rate speeds are per
                  second of; null: the video's) and the features' ``version``
bodyparts         the body parts used, in order (list of strings)
feature_names     the name of every column of ``embeddings`` (list of strings)
pose_path         absolute path of the pose file (``pose_file`` is its name,
                  ``pose_sha256`` the hash of its whole content)
================  ================================================================

A file is fresh when the video, the pose file's content and the settings are those of
now (:func:`is_fresh`: :func:`.store.is_fresh`, whose keys include ``pose_sha256``, and
the ``pose_features`` settings).

Checks (every video's, before anything is written; one line each, naming the file)
--------------------------------------------------------------------------------------
No pose file for a video; a pose file without the body parts asked for (it lists those
it has); a body part none of whose points reaches the likelihood threshold; a pose file
whose row count is not the video's decoded frame count (both numbers).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..config import Config
from ..errors import InputError, PipelineError
from ..fileio import sha256_file
from ..locks import acquire_lock
from ..pose import find_pose_file, read_parts
from ..pose_features import (
    VERSION,
    PoseGeometry,
    compute,
    feature_names,
    parts_without_points,
    valid_points,
)
from ..pose_formats import list_bodyparts
from ..video import probe_video
from .planning import VideoJob, VideoResult, _raise_all
from .store import cache_path, crop_json, expected_attrs, read_attrs
from .store import is_fresh as _store_is_fresh
from .writer import CacheWriter, remove_stale_temps

log = logging.getLogger(__name__)

POSE_STREAM = "pose"
"""The name of the stream in ``extract.backbones`` and of its cache folder."""
PRECISION = "float64"
_KEY = "extract.pose_features"


def settings(cfg: Config) -> dict[str, Any]:
    """The pose-feature settings a cache file records (``pose_features``), defaults resolved."""
    pf, crop = cfg.extract.pose_features, cfg.data.crop
    return {"bodyparts": list(pf.bodyparts) if pf.bodyparts is not None else None,
            "axis": list(pf.axis), "centre": pf.centre, "angles": [list(a) for a in pf.angles],
            "min_likelihood": float(pf.min_likelihood if pf.min_likelihood is not None
                                    else crop.min_likelihood),
            "individual": crop.individual, "fps": cfg.data.fps, "version": VERSION}


def pose_folder(cfg: Config) -> tuple[Path, str]:
    """The folder of pose files for the stream, and the config key it came from."""
    pf = cfg.extract.pose_features
    if pf.pose:
        return Path(pf.pose), f"{_KEY}.pose"
    if cfg.data.crop.pose:
        return Path(cfg.data.crop.pose), "data.crop.pose"
    raise InputError(f"{cfg.source}: extract.backbones lists pose but no pose folder is set; set "
                     f"{_KEY}.pose (or data.crop.pose)")


@dataclass(frozen=True)
class PoseJob:
    """One video for the pose stream: the video, its pose file and (once validated) its facts."""

    video: VideoJob
    pose_file: Path
    pose_sha256: str
    n_frames: int | None = None
    fps: float | None = None

    @property
    def video_id(self) -> str:
        return self.video.video_id


def find_pose(cfg: Config, video: VideoJob) -> PoseJob:
    """The pose file of a video, and its hash (InputError when there is none, or several)."""
    folder, key = pose_folder(cfg)
    path = find_pose_file(folder, video.path.stem, key, "or remove pose from extract.backbones")
    try:
        sha = sha256_file(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the pose file ({exc.strerror})") from None
    return PoseJob(video, path.absolute(), sha)


def expected_for(cfg: Config, job: PoseJob) -> dict[str, Any]:
    """The attributes a pose cache file of ``job`` made now would carry (provenance)."""
    attrs = expected_attrs(backbone=POSE_STREAM, weights="none", input_size=0,
                           crop=crop_json({"mode": "none"}), dtype=cfg.extract.dtype,
                           precision=PRECISION, video_path=job.video.path,
                           fingerprint=job.video.fingerprint, fps=job.fps,
                           pose_file=job.pose_file.name, pose_sha256=job.pose_sha256)
    attrs["pose_features"] = crop_json(settings(cfg))
    attrs["pose_path"] = str(job.pose_file)
    return attrs


def is_fresh(path: Path, expected: dict[str, Any]) -> tuple[bool, str]:
    """:func:`.store.is_fresh`, and the same ``pose_features`` settings as ``expected``."""
    fresh, reason = _store_is_fresh(path, expected)
    if not fresh:
        return fresh, reason
    try:
        recorded = read_attrs(path).get("pose_features")
    except PipelineError as exc:
        return False, f"unreadable: {exc}"
    if recorded != expected["pose_features"]:
        return False, f"pose_features changed ({recorded} -> {expected['pose_features']})"
    return True, reason


def read_points(cfg: Config, job: PoseJob) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """The body parts used, their ``(T, P, 2)`` points and ``(T, P)`` likelihoods (None when
    the file gives none), as the file holds them.

    Raises
    ------
    InputError
        Unreadable file, or body parts asked for (``bodyparts``, ``axis``, ``centre``,
        ``angles``) that it lacks (the message lists what it has).
    """
    pf, path = cfg.extract.pose_features, job.pose_file
    present = list_bodyparts(path)
    parts = list(pf.bodyparts) if pf.bodyparts is not None else present
    needed = [*parts, *pf.axis, *([pf.centre] if pf.centre else []), *(p for a in pf.angles for p in a)]
    missing = [p for p in dict.fromkeys(needed) if p not in present]
    if missing:
        raise InputError(f"{path}: body part(s) {', '.join(missing)} not found; the file has: "
                         f"{', '.join(present) or 'none'}; set {_KEY}.bodyparts, axis, centre and angles "
                         "to parts it has")
    tracks = list(read_parts(path, parts, individual=cfg.data.crop.individual).values())
    xy = np.stack([t.xy for t in tracks], axis=1)
    if all(t.likelihood is None for t in tracks):
        return parts, xy, None
    like = np.stack([t.likelihood if t.likelihood is not None else np.ones(len(t.xy)) for t in tracks], 1)
    return parts, xy, like


def geometry(cfg: Config, parts: list[str]) -> PoseGeometry:
    """The axis, centre and angles of the settings as indices into ``parts``."""
    pf = cfg.extract.pose_features
    return PoseGeometry(parts.index(pf.axis[0]), parts.index(pf.axis[1]),
                        parts.index(pf.centre) if pf.centre else None,
                        tuple(tuple(parts.index(p) for p in a) for a in pf.angles))


def _check_points(cfg: Config, job: PoseJob, parts: list[str], xy: np.ndarray,
                  like: np.ndarray | None) -> None:
    threshold = settings(cfg)["min_likelihood"]
    empty = parts_without_points(valid_points(xy, like, threshold))
    if empty:
        def best(j: int) -> str:
            if like is None or not np.isfinite(like[:, j]).any():
                return "no point"
            return f"highest {np.nanmax(like[:, j]):.3g}"
        detail = ", ".join(f"{parts[j]} ({best(j)})" for j in empty)
        raise InputError(f"{job.pose_file}: no point of body part(s) {detail} reaches likelihood "
                         f"{threshold}; lower {_KEY}.min_likelihood or leave them out of "
                         f"{_KEY}.bodyparts")
    g = geometry(cfg, parts)
    filled_len = np.hypot(*(np.nan_to_num(xy[:, g.front]) - np.nan_to_num(xy[:, g.back])).T)
    if not np.any(filled_len > 0):
        raise InputError(f"{job.pose_file}: the axis parts {parts[g.back]} and {parts[g.front]} are "
                         f"always at the same place; set {_KEY}.axis to two distinct parts")


def validate(cfg: Config, job: PoseJob) -> PoseJob:
    """The video's true frame count and rate, and the pose file checked against them."""
    info = probe_video(job.video.path)
    parts, xy, like = read_points(cfg, job)
    if len(xy) != info.n_frames:
        raise InputError(f"{job.pose_file}: {len(xy)} pose rows but {job.video.path} has "
                         f"{info.n_frames} frames; use the pose file made from this video")
    _check_points(cfg, job, parts, xy, like)
    return replace(job, n_frames=info.n_frames, fps=info.fps)


def features_of(cfg: Config, job: PoseJob) -> tuple[np.ndarray, list[str], list[str]]:
    """The ``(n_frames, n_features)`` features of a validated job, the parts and the names."""
    parts, xy, like = read_points(cfg, job)
    pf = cfg.extract.pose_features
    try:
        fps = float(cfg.data.fps or job.fps)  # as stage 2 takes it: data.fps, else the video's
        feats = compute(xy, like, geometry(cfg, parts), fps, settings(cfg)["min_likelihood"])
    except ValueError as exc:
        raise InputError(f"{job.pose_file}: {exc}; check {_KEY}") from None
    return feats, parts, feature_names(parts, [tuple(a) for a in pf.angles])


def _strings(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=h5py.string_dtype())


class PosePlan:
    """What extract does for the ``pose`` stream: found, planned and validated up front.

    Construct it before anything is written (every problem of every video raises one
    InputError); :meth:`run` then writes the stale files under the folder's lock.
    """

    def __init__(self, cfg: Config, jobs: list[VideoJob], overwrite: bool = False):
        self.cfg, self.overwrite = cfg, overwrite
        self.folder = Path(cfg.extract.cache) / POSE_STREAM
        problems, found = [], []
        for job in jobs:
            try:
                found.append(find_pose(cfg, job))
            except InputError as exc:
                problems.append(str(exc))
        _raise_all(problems)
        self.jobs: list[PoseJob] = found
        self.todo: dict[int, str] = {}
        for i, job in enumerate(found):
            fresh, reason = is_fresh(self.target(job), expected_for(cfg, job))
            if overwrite or not fresh:
                self.todo[i] = "--overwrite" if fresh else reason
        checked: dict[int, PoseJob] = {}
        with ThreadPoolExecutor(max_workers=max(1, cfg.extract.decode_workers)) as pool:
            futures = {i: pool.submit(validate, cfg, found[i]) for i in self.todo}
            for i, future in futures.items():
                try:
                    checked[i] = future.result()
                except InputError as exc:
                    problems.append(str(exc))
        _raise_all(problems)
        self.checked = checked

    def target(self, job: PoseJob) -> Path:
        return cache_path(self.cfg.extract.cache, POSE_STREAM, job.video_id)

    def run(self, results: list[VideoResult], keep_going: bool = False) -> None:
        """Write every stale file (kill-safe, under the lock); a result per video into ``results``."""
        if not self.todo:
            log.info("%s: all %d videos up to date in %s", POSE_STREAM, len(self.jobs), self.folder)
            results += [self._up_to_date(job) for job in self.jobs]
            return
        with acquire_lock(self.folder):
            remove_stale_temps(self.folder, any_host=True)  # we hold the lock: no writer of it is alive
            for i, job in enumerate(self.jobs):
                reason = self.todo.get(i)
                if reason is not None and not self.overwrite and is_fresh(
                        self.target(job), expected_for(self.cfg, self.checked[i]))[0]:
                    reason = None  # written meanwhile by another process
                if reason is None:
                    results.append(self._up_to_date(job))
                    continue
                try:
                    results.append(write_pose_file(self.cfg, self.checked[i], reason, self.target(job)))
                except PipelineError as exc:
                    if not keep_going:
                        raise
                    results.append(VideoResult(job.video_id, POSE_STREAM, "failed", 0, reason=str(exc),
                                               path=self.target(job)))

    def _up_to_date(self, job: PoseJob) -> VideoResult:
        target = self.target(job)
        try:
            with h5py.File(target, "r") as f:
                frames = int(f.attrs.get("n_frames", 0))
        except OSError:
            frames = 0
        return VideoResult(job.video_id, POSE_STREAM, "up_to_date", frames, path=target)


def write_pose_file(cfg: Config, job: PoseJob, reason: str, target: Path) -> VideoResult:
    """Compute a validated job's features and write its cache file ``target`` atomically
    (the caller holds the folder's lock)."""
    t0 = time.perf_counter()
    feats, parts, names = features_of(cfg, job)
    attrs = {**expected_for(cfg, job), "bodyparts": _strings(parts), "feature_names": _strings(names)}
    with CacheWriter(target, feats.shape[0], feats.shape[1], cfg.extract.dtype, attrs) as w:
        for a in range(0, feats.shape[0], 4096):
            w.write(feats[a:a + 4096])
        seconds = time.perf_counter() - t0
        w.attrs["extract_frames_per_s"] = feats.shape[0] / seconds if seconds > 0 else 0.0
    log.info("%s/%s: %d frames x %d pose features (%s) in %.2f s", POSE_STREAM, job.video_id,
             feats.shape[0], feats.shape[1], reason, seconds)
    return VideoResult(job.video_id, POSE_STREAM, "extracted", feats.shape[0], seconds, reason, target)


def expected_for_video(cfg: Config, video: VideoJob) -> dict[str, Any]:
    """What a fresh pose cache file of ``video`` records now (for ``cache ls``); InputError
    when its pose file cannot be found or read."""
    return expected_for(cfg, find_pose(cfg, video))
