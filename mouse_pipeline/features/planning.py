"""Stage 1 planning: which cache files are fresh, and which videos can be extracted.

Nothing here builds a model or imports Keras: a re-run with every file fresh, and
``mouse-pipeline cache ls``, are decided from the videos' fingerprints and the cache
files' attributes alone (see :mod:`.store`).

1. :func:`describe_videos` resolves the videos (``data.videos``: folder, glob or file),
   their sanitised ids (unique), fingerprints and, for pose crops, their DLC files and
   hashes.
2. :func:`plan` decides per (backbone, video) whether the cache file is fresh
   (:func:`.store.is_fresh`); fresh ones are skipped without decoding anything.
3. :func:`validate_all` decodes every video that must be extracted (true frame count,
   pose track length) *before* the cache is touched: bad input leaves the cache exactly as
   it was, and all problems are reported together.
4. :func:`cache_table` judges every file of a cache the same way, for ``cache ls``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..config import Config
from ..dataset import find_videos
from ..devices import resolve_precision
from ..errors import InputError, PipelineError
from ..fileio import sha256_file
from ..pose import check_inside, find_pose_file, read_dlc
from ..video import Crop, VideoInfo, probe_video, video_fingerprint
from .motion import MotionSettings, is_motion_stream
from .store import (
    CacheEntry,
    cache_path,
    crop_json,
    expected_attrs,
    is_fresh,
    is_imported,
    list_cache,
    sanitize_id,
)

STATUSES = ("extracted", "up_to_date", "failed")


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



def crop_settings(cfg: Config) -> str:
    """The config's crop settings as the ``crop`` attribute records them (:func:`.store.crop_json`)."""
    c = cfg.data.crop
    if c.mode == "box":
        return crop_json({"mode": "box", "box": [int(v) for v in c.box]})
    if c.mode == "pose":
        settings = {"mode": "pose", "bodypart": c.bodypart, "min_likelihood": float(c.min_likelihood),
                    "size": int(c.size)}
        if c.individual is not None:  # only then: caches of single-animal files stay fresh
            settings["individual"] = c.individual
        return crop_json(settings)
    return crop_json({"mode": "none"})


def _pose_sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the pose file ({exc.strerror})") from None


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
    settings = crop_settings(cfg)
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
                pose_sha = _pose_sha256(pose_file)
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


def expected_for(cfg: Config, backbone: str, weights: str, size: int, job: VideoJob) -> dict[str, Any]:
    """The attributes a cache file of ``job`` made now would carry (:func:`.store.expected_attrs`).

    ``backbone`` is a stream name; a motion stream's files also record ``extract.motion``.
    """
    fps = job.info.fps if job.info is not None else None
    motion = (MotionSettings.from_config(cfg.extract.motion).to_json() if is_motion_stream(backbone)
              else None)
    return expected_attrs(backbone=backbone, weights=weights, input_size=size, crop=job.crop_settings,
                          dtype=cfg.extract.dtype, precision=resolve_precision(cfg.extract.precision), video_path=job.path,
                          fingerprint=job.fingerprint, fps=fps,
                          pose_file=job.pose_file.name if job.pose_file else "", pose_sha256=job.pose_sha256,
                          motion=motion)


def validate(cfg: Config, job: VideoJob) -> VideoJob:
    """Decode a video once (true frame count) and build its crop; InputError when unusable."""
    info = probe_video(job.path)
    c = cfg.data.crop
    if c.mode == "box":
        crop = Crop("box", box=tuple(c.box))
    elif c.mode == "pose":
        centres = read_dlc(job.pose_file, c.bodypart, c.min_likelihood, individual=c.individual)
        if len(centres) != info.n_frames:
            raise InputError(f"{job.pose_file}: {len(centres)} pose rows but {job.path} has "
                             f"{info.n_frames} frames; use the pose file made from this video")
        check_inside(centres, info.width, info.height, job.pose_file, video=job.path)
        crop = Crop("pose", size=c.size, centres=centres)
    else:
        crop = Crop.none()
    return replace(job, info=info, crop=crop)


def validate_all(cfg: Config, jobs: list[VideoJob], progress: bool) -> list[VideoJob]:
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


def plan(cfg: Config, jobs: list[VideoJob], sizes: dict[str, int], weights: str,
         overwrite: bool = False) -> dict[str, list[tuple[int, str]]]:
    """Which (backbone, video) need extracting; nothing is decoded.

    Parameters
    ----------
    cfg
        The config (``extract.cache``, ``extract.dtype``, ``extract.precision``, crop).
    jobs
        The videos (:func:`describe_videos`).
    sizes
        Input side per backbone name, in the order the backbones are extracted.
    weights
        The weights' identity (:func:`mouse_pipeline.backbones.weights_id`).
    overwrite
        Extract fresh files too (their reason is ``--overwrite``).

    Returns
    -------
    dict
        Per backbone, ``(index into jobs, reason)`` of every video to extract.
    """
    todo: dict[str, list[tuple[int, str]]] = {name: [] for name in sizes}
    for name, size in sizes.items():
        for i, job in enumerate(jobs):
            fresh, reason = is_fresh(cache_path(cfg.extract.cache, name, job.video_id),
                                     expected_for(cfg, name, weights, size, job))
            if overwrite or not fresh:
                todo[name].append((i, "--overwrite" if fresh else reason))
    return todo


def cache_table(cache_root: str | Path, cfg: Config | None = None) -> list[dict[str, Any]]:
    """Rows for ``mouse-pipeline cache ls``: what is cached and whether it is still valid.

    Parameters
    ----------
    cache_root
        The cache folder.
    cfg
        When given, files are also judged against its settings (weights, input size,
        crop, pose files, dtype, precision, a motion stream's ``extract.motion``); otherwise only against their video and the
        backbone folder they are in (a file made by another backbone is stale).

    Returns
    -------
    list of dict
        Keys ``video, backbone, frames, dim, dtype, weights, tool, source, size_mb, status,
        reason``; ``tool`` and ``source`` (the source file's name) are those of imported
        features (``cache import``), ``-`` for extracted ones. An imported file is judged
        against its video only (``cfg``'s extract settings do not apply to it).
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
                     "tool": str(entry.attrs.get("tool") or "-"),
                     "source": Path(str(entry.attrs["source"])).name if entry.attrs.get("source") else "-",
                     "size_mb": f"{entry.bytes / 1e6:.1f}", "status": status, "reason": reason})
    return rows


def _entry_status(entry: CacheEntry, cfg: Config | None) -> tuple[str, str]:
    if entry.error is not None:
        return "stale", "unreadable"
    made_by = entry.attrs.get("backbone")
    if made_by != entry.backbone:  # e.g. copied from another backbone's folder
        return "stale", f"holds {made_by} embeddings, not {entry.backbone}"
    video = Path(str(entry.attrs.get("video_path", "")))
    if entry.attrs.get("video_path") and sanitize_id(video.stem) != entry.video_id:  # swapped, copied
        return "stale", f"made from {video.name}, not from video {entry.video_id}"
    if not entry.attrs.get("video_path") or not video.is_file():
        return "unknown", "video not found"
    fingerprint = video_fingerprint(video)
    expected: dict[str, Any] = {"video_size": fingerprint["size"], "video_mtime_ns": fingerprint["mtime_ns"],
                                "video_sha256": fingerprint["sha256"]}
    if cfg is not None and not is_imported(entry.attrs):
        try:
            expected, check = expected_now(cfg, entry.backbone, video, fingerprint)
        except PipelineError as exc:
            return "stale", str(exc)[:80]
        return _judge(entry, expected, check)
    return _judge(entry, expected)


FreshCheck = Callable[[Path, dict[str, Any]], tuple[bool, str]]


def expected_now(cfg: Config, stream: str, video: Path, fingerprint: dict[str, Any] | None = None,
                 weights: str | None = None) -> tuple[dict[str, Any], FreshCheck]:
    """What extract with ``cfg`` would record now in ``stream``'s cache file of ``video``.

    Extract's rule of freshness (:func:`plan`, :class:`.pose_stream.PosePlan`), for one
    file, as ``cache ls`` and stage 2 (:func:`mouse_pipeline.dataset.check_cache_settings`)
    judge it: a computed stream's file by :func:`.store.is_fresh` against
    :func:`expected_for` (weights, input size, crop, the pose file of a pose crop, dtype,
    precision, motion settings, the video), the ``pose`` stream's by
    :func:`.pose_stream.is_fresh` (its pose file and settings too).

    Parameters
    ----------
    cfg
        The config.
    stream
        A registry backbone, its motion stream, or ``pose`` (not an imported stream:
        those are judged against their video only).
    video
        The video file (its stem finds its pose file).
    fingerprint
        Its ``video.video_fingerprint`` when already taken.
    weights
        The weights identity (:func:`mouse_pipeline.backbones.weights_id`) when already
        known (it hashes a weights file).

    Returns
    -------
    tuple of (dict, callable)
        The expected attributes, and the check ``(path, expected) -> (fresh, reason)``.

    Raises
    ------
    PipelineError
        An unknown backbone, a weights file or the video's pose file that cannot be read.
    """
    from ..backbones import resolve_input_size, weights_id
    from .pose_stream import POSE_STREAM, expected_for_video
    from .pose_stream import is_fresh as pose_fresh

    video = Path(video)
    fingerprint = fingerprint if fingerprint is not None else video_fingerprint(video)
    job = VideoJob(sanitize_id(video.stem), video, fingerprint, crop_settings(cfg))
    if stream == POSE_STREAM:  # the pose stream: features of the pose file, no backbone
        return expected_for_video(cfg, job), pose_fresh
    if cfg.data.crop.mode == "pose":
        pose = find_pose_file(cfg.data.crop.pose, video.stem)
        job = replace(job, pose_file=pose, pose_sha256=_pose_sha256(pose))
    size = resolve_input_size(stream, cfg.extract.input_size)
    wid = weights if weights is not None else weights_id(cfg.extract.weights)
    return expected_for(cfg, stream, wid, size, job), is_fresh


def _judge(entry: CacheEntry, expected: dict[str, Any], fresh_check: Any = is_fresh) -> tuple[str, str]:
    fresh, reason = fresh_check(entry.path, expected)
    if not fresh:
        return "stale", reason
    return _finite_status(entry)


def _finite_status(entry: CacheEntry) -> tuple[str, str]:
    """``stale`` with the first bad frame when the embeddings hold NaN or infinities."""
    from ..dataset import open_features

    try:
        frame = open_features(entry.path, entry.backbone).first_nonfinite_frame()
    except PipelineError as exc:
        return "stale", str(exc)[:80]
    return ("fresh", "") if frame is None else ("stale", f"NaN or infinite values, first at frame {frame}")
