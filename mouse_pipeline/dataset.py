"""Stage 2's view of the data: cached embeddings and labels per video, never the video.

``load_dataset(cfg, backbone)`` finds the videos named by ``data.videos`` (by name only:
no video is opened), reads each one's cache file ``<cache>/<backbone>/<id>.h5`` and its
label file ``<labels>/<id>.csv``, checks that they agree in frame count (within
``data.max_frame_mismatch``) and that every cache file of the backbone was made with the
same settings, and returns one :class:`VideoData` per labelled video.
"""

from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import Labels, check_length, read_labels
from .config import Config
from .errors import CacheError, InputError
from .features.store import cache_path, read_attrs, read_embeddings, sanitize_id

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".wmv")
# Cache attributes that must agree across all videos of one backbone in a run.
SETTINGS_KEYS = ("backbone", "weights", "input_size", "crop", "precision", "dim")


@dataclass(frozen=True)
class VideoData:
    """Embeddings and labels of one video for one backbone."""

    video_id: str
    embeddings: np.ndarray  # (n_frames, dim) float32
    labels: Labels | None
    fps: float
    cache_file: Path

    @property
    def n_frames(self) -> int:
        return int(self.embeddings.shape[0])


def find_videos(spec: str | Path) -> list[Path]:
    """Video files named by a folder, a glob or a single file, sorted by name.

    Raises
    ------
    InputError
        When the folder or file does not exist or holds no video.
    """
    text = str(spec)
    path = Path(text)
    if any(ch in text for ch in "*?["):
        found = sorted(Path(p) for p in glob.glob(text) if Path(p).suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise InputError(f"{text}: the pattern matches no video file ({', '.join(VIDEO_SUFFIXES)}); check data.videos")
        return found
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if not found:
            raise InputError(f"{path}: the folder holds no video file ({', '.join(VIDEO_SUFFIXES)}); check data.videos")
        return found
    if path.is_file():
        return [path]
    raise InputError(f"{path}: no such file or folder; set data.videos to a folder, glob or video file")


def video_ids(cfg: Config) -> list[str]:
    """Sanitised ids (file stems) of the configured videos, checked to be unique."""
    ids: dict[str, Path] = {}
    for path in find_videos(cfg.data.videos):
        vid = sanitize_id(path.stem)
        if vid in ids:
            raise InputError(f"{path}: video id {vid!r} is also the id of {ids[vid]}; rename one of them")
        ids[vid] = path
    return list(ids)


def label_file(cfg: Config, video_id: str) -> Path | None:
    """The label file of a video (``<labels>/<id>.<csv|tsv|txt>``), or None."""
    if cfg.data.labels is None:
        return None
    folder = Path(cfg.data.labels)
    if not folder.is_dir():
        raise InputError(f"{folder}: labels folder does not exist; set data.labels to the folder of label files")
    for suffix in (".csv", ".tsv", ".txt"):
        candidate = folder / f"{video_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def cache_settings(attrs: dict) -> dict:
    """The attributes that must agree across videos of one backbone."""
    return {k: attrs.get(k) for k in SETTINGS_KEYS}


def load_video(cfg: Config, backbone: str, video_id: str, need_labels: bool = True) -> VideoData:
    """Embeddings (and labels) of one video; CacheError when it has not been extracted."""
    path = cache_path(cfg.extract.cache, backbone, video_id)
    if not path.is_file():
        raise CacheError(f"{path}: no cached embeddings for video {video_id!r} and backbone "
                         f"{backbone!r}; run `mouse-pipeline extract` with this config first")
    emb = np.asarray(read_embeddings(path, expected_backbone=backbone), dtype=np.float32)
    attrs = read_attrs(path)
    fps = float(cfg.data.fps or attrs.get("fps") or 0.0)
    if fps <= 0:
        raise CacheError(f"{path}: no frame rate recorded; set data.fps")
    labels = None
    if need_labels:
        lf = label_file(cfg, video_id)
        if lf is None:
            raise InputError(f"{cfg.data.labels}: no label file for video {video_id!r} "
                             f"(expected {video_id}.csv)")
        columns = dict(cfg.data.label_columns) or None
        labels = read_labels(lf, cfg.data.label_format, cfg.data.behaviors, columns=columns,
                             fps=fps, n_frames=emb.shape[0])
        labels = check_length(labels, emb.shape[0], cfg.data.max_frame_mismatch, video_id)
    return VideoData(video_id, emb, labels, fps, path)


def load_dataset(cfg: Config, backbone: str) -> list[VideoData]:
    """Every labelled video of the config for one backbone, checked for consistency.

    Videos without a label file are skipped with a warning (they cannot be trained or
    scored on); cache files made with different settings are an error.
    """
    out: list[VideoData] = []
    reference: tuple[str, dict] | None = None
    for vid in video_ids(cfg):
        if label_file(cfg, vid) is None:
            log.warning("video %s has no label file in %s: not used for training", vid, cfg.data.labels)
            continue
        data = load_video(cfg, backbone, vid)
        settings = cache_settings(read_attrs(data.cache_file))
        if reference is None:
            reference = (vid, settings)
        elif settings != reference[1]:
            diff = [k for k in SETTINGS_KEYS if settings[k] != reference[1][k]]
            raise CacheError(
                f"{data.cache_file}: made with different {', '.join(diff)} than the cache file of "
                f"{reference[0]}; re-run `mouse-pipeline extract --overwrite` so all videos match")
        out.append(data)
    if not out:
        raise InputError(f"{cfg.data.labels}: no labelled video among {cfg.data.videos}; "
                         "label files must be named <video stem>.csv")
    return out
