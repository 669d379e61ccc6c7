"""Stage 2's view of the data: cached embeddings and labels per video, never the video.

``load_dataset(cfg, backbone)`` finds the videos named by ``data.videos`` (by name only:
no video is opened), opens each one's cache file ``<cache>/<backbone>/<id>.h5`` and reads
its label file ``<labels>/<id>.csv``, checks that they agree in frame count (within
``data.max_frame_mismatch``) and that every cache file of the backbone was made from its
video with the config's settings (what extract would leave as it is), and returns one
:class:`VideoData` per labelled video.

Embeddings are not read until they are needed: :class:`CachedFeatures` slices frames
from the cache file as a window asks for them, so a labelled set larger than memory can
still be trained on; :func:`load_into_memory` reads them once when they fit a budget.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .annotations import Labels, check_length, find_label_file, read_labels
from .config import Config
from .errors import CacheError, InputError
from .features.store import DATASET, cache_path, is_imported, read_attrs, sanitize_id
from .fileio import first_line
from .streams import FusedFeatures, streams_of

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".m4v", ".wmv")
# Cache attributes that must agree across all videos of one backbone in a run.
# (``pose_features``, ``feature_names``: only the ``pose`` stream's files have them; ``motion``:
# only motion streams'.)
SETTINGS_KEYS = ("backbone", "weights", "input_size", "crop", "precision", "dim", "pose_features",
                 "feature_names", "motion")


class CachedFeatures:
    """The embeddings of one cache file, read as they are sliced (as float32).

    Slices like a ``(n_frames, dim)`` array: ``features[a:b]`` reads frames ``a..b-1``
    from the file (a stop past the end is clipped). The file is opened on first use and
    kept open until :meth:`close` (or pickling, which drops the handle).

    Parameters
    ----------
    path
        The cache file, already checked (:func:`open_features`).
    shape
        ``(n_frames, dim)`` of its embeddings.
    """

    def __init__(self, path: Path, shape: tuple[int, int]) -> None:
        self.path, self.shape = Path(path), (int(shape[0]), int(shape[1]))
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        try:
            return np.asarray(self._file[DATASET][key], dtype=np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise CacheError(f"{self.path}: cannot read embeddings ({first_line(exc)}); the file is "
                             "damaged: re-run extract with --overwrite") from None

    def first_nonfinite_frame(self, chunk: int = 4096) -> int | None:
        """The first frame holding NaN or an infinity, or None (read a chunk at a time)."""
        try:
            for a in range(0, self.shape[0], chunk):
                bad = np.flatnonzero(~np.isfinite(self[a:a + chunk]).all(axis=1))
                if bad.size:
                    return a + int(bad[0])
            return None
        finally:
            self.close()

    def check_finite(self) -> None:
        """CacheError naming the file and the first frame holding NaN or an infinity."""
        frame = self.first_nonfinite_frame()
        if frame is not None:
            raise CacheError(f"{self.path}: embeddings hold NaN or infinite values, first at frame "
                             f"{frame}; re-run extract with --overwrite (check the video and "
                             "extract.precision)")

    def load(self) -> np.ndarray:
        """Every frame, as one float32 array."""
        try:
            return self[:]
        finally:
            self.close()

    def close(self) -> None:
        """Close the file (it is opened again by the next read)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "shape": self.shape, "_file": None}


def open_features(path: Path, backbone: str) -> CachedFeatures:
    """Check a cache file (dataset, backbone, shape) without reading its embeddings.

    Raises
    ------
    CacheError
        Missing, unreadable, of another backbone, or inconsistent with its attributes.
    """
    if not path.is_file():
        raise CacheError(f"{path}: no such cache file; run `mouse-pipeline extract` first")
    try:
        with h5py.File(path, "r") as f:
            ds = f.get(DATASET)
            if not isinstance(ds, h5py.Dataset):
                raise CacheError(f"{path}: no {DATASET!r} dataset, not a mouse-pipeline cache file; "
                                 "delete it or re-run extract with --overwrite")
            found = f.attrs.get("backbone")
            found = found.decode() if isinstance(found, bytes) else found
            if found != backbone:
                raise CacheError(f"{path}: holds {found!r} embeddings where {backbone!r} "
                                 "was expected; re-run extract with --overwrite")
            n_frames, shape = f.attrs.get("n_frames"), ds.shape
    except (OSError, KeyError, ValueError) as exc:
        raise CacheError(f"{path}: unreadable cache file ({first_line(exc)}); delete it or re-run "
                         "extract with --overwrite") from None
    if len(shape) != 2 or n_frames is None or shape[0] != int(n_frames):
        raise CacheError(f"{path}: embeddings of shape {shape} but n_frames {n_frames}; the "
                         "file is damaged: re-run extract with --overwrite")
    return CachedFeatures(path, shape)


@dataclass(frozen=True)
class VideoData:
    """Embeddings and labels of one video for one backbone.

    ``features`` is ``(n_frames, dim)``: a float32 array, or :class:`CachedFeatures`
    read from the cache as sliced.
    """

    video_id: str
    features: Any
    labels: Labels | None
    fps: float
    cache_file: Path
    video_file: Path | None = None
    label_file: Path | None = None
    #: The widths of an input set's streams, in column order (empty: one stream).
    stream_dims: tuple[int, ...] = ()

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])


def load_into_memory(videos: Sequence[VideoData], budget_gb: float) -> list[VideoData]:
    """The videos with their embeddings in memory when all fit ``budget_gb``; else as they are.

    Reading per window from the cache gives the same numbers, only more slowly, so this
    changes speed and memory, never a result.
    """
    need = sum(v.n_frames * v.dim * 4 for v in videos)
    if need > budget_gb * 1e9:
        log.info("embeddings (%.3g GB) exceed train.memory_gb (%g): windows are read from the "
                 "cache as needed", need / 1e9, budget_gb)
        return list(videos)
    return [v if isinstance(v.features, np.ndarray) else replace(v, features=v.features.load())
            for v in videos]


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


@dataclass(frozen=True)
class VideoFile:
    """A video and its id: the one mapping from a video to its files.

    ``video_id`` (the stem made safe as a file name, :func:`sanitize_id`) names its cache
    file and every output; its label and pose files are found by the video's real stem
    (``mouse 000.mp4`` -> ``mouse 000.csv``) or by its id.
    """

    path: Path
    video_id: str

    @property
    def stems(self) -> tuple[str, ...]:
        """Names a label or pose file of this video may have (without suffix)."""
        return tuple(dict.fromkeys((self.path.stem, self.video_id)))


def video_files(specs: str | Path | Sequence[str | Path]) -> list[VideoFile]:
    """The videos named by one or several folders, globs or files, with unique ids.

    Raises
    ------
    InputError
        No video, or two videos whose ids (and so cache and output files) would collide.
    """
    found: dict[str, VideoFile] = {}
    for spec in [specs] if isinstance(specs, (str, Path)) else specs:
        for path in find_videos(spec):
            vf = VideoFile(path, sanitize_id(path.stem))
            other = found.get(vf.video_id)
            if other is not None and other.path.resolve() != path.resolve():
                raise InputError(f"{path}: video id {vf.video_id!r} is also the id of {other.path} (cache "
                                 "and output files would collide); rename one of them")
            found[vf.video_id] = vf
    return list(found.values())


def video_ids(cfg: Config) -> list[str]:
    """Ids of the configured videos, checked to be unique."""
    return [v.video_id for v in video_files(cfg.data.videos)]


def label_file(cfg: Config, video: VideoFile | str) -> Path | None:
    """The label file of a video (``<labels>/<stem or id>.<csv|tsv|txt>``), or None.

    Raises
    ------
    InputError
        ``data.labels`` is not a folder, or more than one file could be this video's
        (:func:`~mouse_pipeline.annotations.find_label_file`).
    """
    if cfg.data.labels is None:
        return None
    return find_label_file(cfg.data.labels, video.stems if isinstance(video, VideoFile) else video)


def check_cache_is_of(video: VideoFile, cache_file: Path, attrs: dict, now: dict | None = None) -> None:
    """Refuse a cache file not made from this video as it is now (``now``: its fingerprint).

    A video copied over another after extraction, or two cache files swapped, would
    otherwise train on another video's embeddings without a word.
    """
    from .video import video_fingerprint

    now = now if now is not None else video_fingerprint(video.path)
    recorded = {k: attrs.get(f"video_{k}") for k in ("size", "mtime_ns", "sha256")}
    made_from = str(attrs.get("video_path") or "")
    other = made_from and sanitize_id(Path(made_from).stem) != video.video_id
    if other or recorded != now:
        done, again = (("imported", "`mouse-pipeline cache import` to import its features again")
                       if is_imported(attrs) else
                       ("extracted", "`mouse-pipeline extract` with this config to extract it again"))
        why = f"made from {made_from}" if other else f"the video changed since it was {done}"
        raise CacheError(f"{cache_file}: not the embeddings of {video.path} ({why}); run {again}")


def check_cache_settings(cfg: Config, stream: str, video: VideoFile, cache_file: Path, attrs: dict,
                         weights: str | None = None, fingerprint: dict | None = None) -> None:
    """Refuse a cache file that extract with ``cfg`` would make again: made with other
    settings than the config's (weights, input size, crop, the video's pose file, dtype,
    precision, motion or pose-feature settings).

    The run records ``cfg``, and predict extracts new videos with it: a model trained on
    embeddings of other settings would be applied to embeddings it never saw, without a
    word. The rule is extract's (:func:`.features.planning.expected_now`), except that
    with ``extract.precision: auto`` the precision is not compared (auto means what the
    extracting machine chose). Imported features are judged against their video only
    (:func:`check_cache_is_of`).

    Parameters
    ----------
    cfg, stream
        The config stage 2 runs with; the stream (backbone) the file is of.
    video, cache_file, attrs
        The video, its cache file and the file's attributes (:func:`.features.store.read_attrs`).
    weights, fingerprint
        When already known: the config's weights identity (:func:`.backbones.weights_id`)
        and the video's :func:`.video.video_fingerprint`.

    Raises
    ------
    CacheError
        The file was made with other settings; the message names the first that differs.
    """
    if is_imported(attrs):
        return
    from .features.planning import expected_now

    expected, check = expected_now(cfg, stream, video.path, fingerprint, weights)
    if cfg.extract.precision == "auto":
        expected.pop("precision", None)
    fresh, reason = check(cache_file, expected)
    if not fresh:
        raise CacheError(f"{cache_file}: made with other settings than this config's ({reason}); run "
                         "`mouse-pipeline extract` with this config to extract it again (or train with "
                         "the settings it was made with)")


def cache_settings(attrs: dict) -> dict:
    """The attributes that must agree across videos of one backbone."""
    return {k: attrs.get(k) for k in SETTINGS_KEYS}


def load_video(cfg: Config, backbone: str, video: VideoFile, need_labels: bool = True,
               weights: str | None = None) -> VideoData:
    """Embeddings (and labels) of one video, checked to be this video's, made with ``cfg``'s
    settings (:func:`check_cache_settings`; ``weights``: the config's weights identity when
    already known) and finite.

    Raises
    ------
    CacheError
        Not extracted, made from another video or an older version of it, made with other
        settings than the config's, damaged, or holding NaN or infinite values.
    """
    video_id = video.video_id
    path = cache_path(cfg.extract.cache, backbone, video_id)
    if not path.is_file():
        raise CacheError(f"{path}: no cached embeddings for video {video_id!r} and backbone "
                         f"{backbone!r}; run `mouse-pipeline extract` with this config first (or "
                         "`mouse-pipeline cache import` for features made by another tool)")
    features = open_features(path, backbone)
    attrs = read_attrs(path)
    from .video import video_fingerprint

    fingerprint = video_fingerprint(video.path)  # read once for both checks
    check_cache_is_of(video, path, attrs, fingerprint)
    check_cache_settings(cfg, backbone, video, path, attrs, weights, fingerprint)
    features.check_finite()
    fps = float(cfg.data.fps or attrs.get("fps") or 0.0)
    if fps <= 0:
        raise CacheError(f"{path}: no frame rate recorded; set data.fps")
    labels = None
    if need_labels:
        lf = label_file(cfg, video)
        if lf is None:
            raise InputError(f"{cfg.data.labels}: no label file for video {video.path.name} "
                             f"(expected {video.stems[0]}.csv)")
        columns = dict(cfg.data.label_columns) or None
        labels = read_labels(lf, cfg.data.label_format, cfg.data.behaviors, columns=columns,
                             fps=fps, n_frames=len(features))
        labels = check_length(labels, len(features), cfg.data.max_frame_mismatch, video_id)
    return VideoData(video_id, features, labels, fps, path, video.path, lf if need_labels else None)


def check_frames_agree(files: Sequence[Path], counts: Sequence[int]) -> None:
    """InputError naming two cache files of one video whose frame counts differ."""
    for f, n in zip(files[1:], counts[1:], strict=True):
        if n != counts[0]:
            raise InputError(f"{f}: {n} frames but {files[0]} has {counts[0]}; the streams of an input "
                             "set must have one row per frame of the same video (extract or import "
                             "them again from the same video)")


def fuse(parts: list[VideoData]) -> VideoData:
    """One video's data for an input set, from its data for each stream (same video, same
    labelled videos: every stream's cache and the same label file)."""
    check_frames_agree([v.cache_file for v in parts], [v.n_frames for v in parts])
    return replace(parts[0], features=FusedFeatures([v.features for v in parts]),
                   stream_dims=tuple(v.dim for v in parts))


def open_input(cache: str | Path, name: str, video_id: str) -> Any:
    """The frame source of one video for a backbone or input set: checked cache files
    (:func:`open_features`), fused when the set has several streams."""
    streams = streams_of(name)
    paths = [cache_path(cache, s, video_id) for s in streams]
    parts = [open_features(p, s) for p, s in zip(paths, streams, strict=True)]
    if len(parts) == 1:
        return parts[0]
    check_frames_agree(paths, [len(p) for p in parts])
    return FusedFeatures(parts)


def _weights_of(cfg: Config, stream: str) -> str | None:
    """The config's weights identity for a backbone's stream (a weights file hashed once); else None."""
    from .backbones import REGISTRY, weights_id
    from .features.motion import stream_backbone

    return weights_id(cfg.extract.weights) if stream_backbone(stream) in REGISTRY else None


def load_dataset(cfg: Config, backbone: str) -> list[VideoData]:
    """Every labelled video of the config for one backbone (or input set), checked for consistency.

    Videos without a label file are skipped with a warning (they cannot be trained or
    scored on); cache files made with different settings are an error. An input set of
    several streams (:mod:`.streams`) gives each video the streams' features side by side
    (:class:`~.streams.FusedFeatures`), its frame counts checked to agree.
    """
    streams = streams_of(backbone)
    if len(streams) > 1:
        for video in video_files(cfg.data.videos):  # before labels are fitted to any one stream
            paths = [cache_path(cfg.extract.cache, s, video.video_id) for s in streams]
            if all(p.is_file() for p in paths):  # a missing one: load_video's message
                check_frames_agree(paths, [len(open_features(p, s)) for p, s in zip(paths, streams, strict=True)])
        per_stream = [load_dataset(cfg, s) for s in streams]
        return [fuse(list(parts)) for parts in zip(*per_stream, strict=True)]
    out: list[VideoData] = []
    reference: tuple[str, dict] | None = None
    weights = _weights_of(cfg, backbone)
    for video in video_files(cfg.data.videos):
        vid = video.video_id
        if label_file(cfg, video) is None:
            log.warning("video %s has no label file in %s: not used for training", video.path.name,
                        cfg.data.labels)
            continue
        data = load_video(cfg, backbone, video, weights=weights)
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
