"""Label new videos with a trained run's final model (``mouse-pipeline predict``).

First every video is checked and its embeddings extracted with the run's backbone(s) and
settings (reusing the run's cache when up to date; features imported with ``cache
import`` are never computed and must be in the cache already), so a bad video stops the
command before anything is written; a video whose frame rate is not the training rate is refused
unless resampled or allowed (:mod:`.predictor`). Then per video: apply the final model(s)
trained with ``train --final`` (``--model``: one, the ensemble, or the best per behaviour),
post-process with the thresholds and bout parameters chosen on validation videos, and
write into the output folder, with times from the video's own frame rate:

``formats`` chooses the per-video files: ``csv`` (the default) writes the first three.

``<stem>_predictions.csv``
    ``video, frame, time_s``, then ``p_<behaviour>`` probabilities, then ``<behaviour>``
    0/1 after post-processing.
``<stem>_bouts.csv``
    ``video, behavior, start_frame, end_frame, start_s, end_s, duration_s`` (end frame
    inclusive; ``end_s`` is the end of the last frame), one row per bout of the 0/1 columns.
``<stem>_ethogram.png``
    The bouts over time.
``<stem>_boris.tsv`` (``--format boris``)
    The 0/1 labels as a BORIS events table (:mod:`.exports.boris`).
``bouts.csv``
    The bouts of every video in one table (the per-video files concatenated).
``summary.csv``
    Per video and behaviour: bout count, total seconds, percent of time, latency to the
    first bout and mean bout seconds (empty where there is no bout).
``<stem>.nwb`` (``--format nwb``)
    Bouts as time intervals, probabilities and labels as time series, and the pose used
    for cropping (:mod:`.exports.nwb`).
``<stem>_overlay.mp4`` (``--overlay``)
    The video with the ethogram strip, current labels and probabilities drawn on it
    (:mod:`.overlay`).
``predictions.json``
    Provenance, written last: the run folder, the model (:meth:`.Predictor.record`: its
    members and each behaviour's model, threshold, ``max_gap`` and ``min_len``), the
    package version, the creation time (UTC), and per video its source file, its frame
    rate (and the rate it was resampled to, if any), frame count and the files written.

Every file is written beside its final name and renamed into place. Missing values are
empty cells, so spreadsheets and pandas read the CSVs as they are.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .config import Config
from .dataset import VideoFile, open_input, video_files
from .errors import CacheError, InputError
from .exports.boris import write_boris_events
from .features.store import cache_path, is_imported, read_attrs
from .fileio import atomic_open, write_bytes
from .metrics import bouts_from_binary
from .plots import ethogram_figure, save_png
from .postprocess import apply as apply_postprocess
from .predictor import Predictor, Resampling, check_rate, choose, stated_rate, training_rate
from .runs import FinalModel, RunFolder
from .scoring import write_rows_csv

log = logging.getLogger(__name__)

BOUT_COLUMNS = ["video", "behavior", "start_frame", "end_frame", "start_s", "end_s", "duration_s"]
SUMMARY_COLUMNS = ["video", "behavior", "bout_count", "total_s", "percent_time", "latency_s",
                   "mean_bout_s"]
SIDECAR = "predictions.json"
#: ``--format`` choices: the per-video files written.
FORMATS = ("csv", "nwb", "boris")


@dataclass(frozen=True)
class NewVideo:
    """A video to label: its files, its own frame rate, and the rate it is predicted at."""

    file: VideoFile
    fps: float
    resample_to: float | None


def load_heads(predictor: Predictor) -> list[list[tuple[tuple[int, ...], Any]]]:
    """Every member's models, loaded once (a damaged model file stops predict before any
    output is written)."""
    from .sequences.models import load_model

    return [[(outputs, load_model(path)) for outputs, path in final.heads] for final in predictor.members]


def member_probabilities(final: FinalModel, heads: list, frames) -> np.ndarray:
    """Per-frame probabilities (n_frames, n_behaviours) of one final model's loaded heads.

    ``frames`` is the video's features: an array, or its cache file read window by window.
    """
    from .sequences.inference import predict_heads

    return predict_heads(heads, frames, final.window, final.inference_stride, len(final.behaviors))


def video_probabilities(predictor: Predictor, heads: list, cache: str | Path,
                        video: NewVideo) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and post-processed 0/1 labels on the video's own frames."""
    member_probs = []
    resampling = None
    for final, loaded in zip(predictor.members, heads, strict=True):
        features = open_input(cache, final.backbone, video.file.video_id)
        try:
            features.check_finite()
            frames = features
            if video.resample_to is not None:
                resampling = Resampling(len(features), video.fps, video.resample_to)
                frames = resampling.features(features)
            member_probs.append(member_probabilities(final, loaded, frames))
        finally:
            features.close()
    probs = predictor.combine(member_probs)
    binary = apply_postprocess(probs, predictor.thresholds, predictor.max_gap, predictor.min_len)
    if resampling is not None:  # post-processing counted frames at the training rate
        probs, binary = resampling.to_video(probs), resampling.to_video(binary)
    return probs, binary


def refuse_resampled_motion(videos: list[NewVideo], streams: list[str], train_fps: float | None) -> None:
    """A motion stream shows the movement between consecutive frames at the video's own rate:
    taking its embeddings at another rate would not rescale that movement (at 60 frames/s a
    frame holds half the displacement of one at 30), so such a video is refused."""
    from .features.motion import is_motion_stream

    motion = [s for s in streams if is_motion_stream(s)]
    resampled = [v for v in videos if v.resample_to is not None]
    if motion and resampled:
        v = resampled[0]
        raise InputError(f"{v.file.path}: {v.fps:g} frames/s, and the run's input {motion[0]} is motion "
                         f"between consecutive frames, which --resample cannot rescale to {train_fps:g} "
                         f"frames/s; re-encode the video at {train_fps:g} frames/s (for example ffmpeg -i IN "
                         f"-r {train_fps:g} OUT) and predict that")


def refuse_replacing(cache: str | Path, streams: list[str], files: list[VideoFile]) -> None:
    """Refuse a new video whose cache file holds the embeddings of another video file that
    is still there (a training video of the same name, say): extracting it would replace
    them, and the run's next ``train`` would find its cache gone stale."""
    from .video import same_video

    for f in files:
        for stream in streams:
            path = cache_path(cache, stream, f.video_id)
            try:
                made_from = Path(str(read_attrs(path).get("video_path") or "")) if path.is_file() else None
            except CacheError:  # damaged: extract replaces it, nothing of value is lost
                continue
            if made_from is None or not made_from.is_file() or same_video(made_from, f.path):
                continue
            raise InputError(f"{f.path}: its cache file {path} holds the embeddings of another video, "
                             f"{made_from}; extracting this one would replace them: rename this video, "
                             "or give predict a cache folder of its own (--cache)")


def prepare_videos(run: RunFolder, cfg: Config, predictor: Predictor, videos: list[Path],
                   resample: bool, allow_fps_mismatch: bool, progress: bool,
                   train_cache: str | Path | None = None, fps: float | None = None) -> list[NewVideo]:
    """Check every video's frame rate and imported features, then extract the rest (every
    video is checked before anything is written).

    ``fps``: the videos' frame rate as the user states it (``predict --fps``), for
    containers that record a wrong one; None: each video's container's rate.

    A stream imported with ``cache import`` (in ``cfg``'s cache or ``train_cache``, the
    cache the run trained on) cannot be computed: the videos' imported features must be in
    ``cfg``'s cache already (:func:`.features.importing.check_imported`).
    """
    from .features.extract import extract
    from .features.importing import check_imported, imported_names
    from .video import container_fps

    files = video_files(videos)
    train_fps = training_rate(run)
    out = []
    for f in files:
        rate = container_fps(f.path) if fps is None else stated_rate(f.path, fps)
        out.append(NewVideo(f, rate, check_rate(str(f.path), rate, train_fps, resample, allow_fps_mismatch)))
    refuse_resampled_motion(out, predictor.streams, train_fps)
    roots = list(dict.fromkeys([cfg.extract.cache, *([train_cache] if train_cache is not None else [])]))
    imported = imported_names(roots, predictor.streams)
    check_imported(cfg.extract.cache, imported, files)
    computed = [b for b in predictor.streams if b not in imported]
    refuse_replacing(cfg.extract.cache, computed, files)
    if computed:
        vcfg = cfg.replace(**{"data.labels": None, "extract.backbones": computed, "train.inputs": None,
                              **({"data.fps": fps} if fps is not None else {})})  # pose speeds per --fps
        extract(vcfg, videos=[f.path for f in files], progress=progress)
    return out


def bouts_table(binary: np.ndarray, behaviors: tuple[str, ...], fps: float, video: str) -> list[dict]:
    """One row per bout of each behaviour's 0/1 column of one video (end frame inclusive)."""
    rows = []
    for j, b in enumerate(behaviors):
        for s, e in bouts_from_binary(binary[:, j]):
            rows.append({"video": video, "behavior": b, "start_frame": s, "end_frame": e,
                         "start_s": round(s / fps, 4), "end_s": round((e + 1) / fps, 4),
                         "duration_s": round((e - s + 1) / fps, 4)})
    return rows


def summary_rows(video: str, binary: np.ndarray, behaviors: tuple[str, ...], fps: float) -> list[dict]:
    """Per behaviour: bout count, total seconds, percent of time, latency, mean bout seconds.

    Latency and mean bout length are NaN (an empty cell in ``summary.csv``) without a bout.
    """
    rows = []
    n = binary.shape[0]
    for j, b in enumerate(behaviors):
        bouts = bouts_from_binary(binary[:, j])
        frames = int(binary[:, j].sum())
        rows.append({"video": video, "behavior": b, "bout_count": len(bouts),
                     "total_s": round(frames / fps, 4),
                     "percent_time": round(100.0 * frames / n, 4) if n else math.nan,
                     "latency_s": round(bouts[0][0] / fps, 4) if bouts else math.nan,
                     "mean_bout_s": round(frames / fps / len(bouts), 4) if bouts else math.nan})
    return rows


def write_predictions_csv(path: Path, probs: np.ndarray, binary: np.ndarray,
                          behaviors: tuple[str, ...], fps: float, video: str) -> None:
    """``video, frame, time_s, p_<b>..., <b>...`` (written beside, then renamed).

    A probability that is not a number would be an empty cell (none is expected).
    """
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["video", "frame", "time_s", *(f"p_{b}" for b in behaviors), *behaviors])
        for i in range(probs.shape[0]):
            w.writerow([video, i, f"{i / fps:.4f}", *(f"{p:.5f}" if p == p else "" for p in probs[i]),
                        *binary[i].tolist()])


def write_video_outputs(out: Path, video: str, probs: np.ndarray, binary: np.ndarray,
                        behaviors: tuple[str, ...], model: str, fps: float) -> tuple[list[Path], list[dict]]:
    """One video's predictions CSV, bouts CSV and ethogram; return the files and its bout rows."""
    files = [out / f"{video}_predictions.csv", out / f"{video}_bouts.csv", out / f"{video}_ethogram.png"]
    write_predictions_csv(files[0], probs, binary, behaviors, fps, video)
    bouts = bouts_table(binary, behaviors, fps, video)
    write_rows_csv(files[1], bouts, BOUT_COLUMNS)
    tracks = [(b, binary[:, j], j) for j, b in enumerate(behaviors)]
    save_png(ethogram_figure(tracks, fps, f"{video}: predicted bouts ({model})"), files[2])
    return files, bouts


def write_video_files(out: Path, video: NewVideo, cfg: Config, predictor: Predictor, probs: np.ndarray,
                      binary: np.ndarray, formats: tuple[str, ...],
                      overlay: bool) -> tuple[list[Path], list[dict]]:
    """The per-video files of ``formats`` (and the labelled video); the files and bout rows."""
    vid, fps, behaviors = video.file.video_id, video.fps, predictor.members[0].behaviors
    files: list[Path] = []
    if "csv" in formats:
        files, bouts = write_video_outputs(out, vid, probs, binary, behaviors, predictor.name, fps)
    else:
        bouts = bouts_table(binary, behaviors, fps, vid)
    if "nwb" in formats:
        from .exports.nwb import SUFFIX, write_nwb

        pose = None
        if cfg.data.crop.mode == "pose":
            from .pose import find_pose_file

            pose = (find_pose_file(cfg.data.crop.pose, vid), cfg.data.crop.bodypart)
        files.append(write_nwb(out / f"{vid}{SUFFIX}", vid, probs, binary, behaviors, fps,
                               video.file.path, predictor.name, pose))
    if "boris" in formats:
        files.append(out / f"{vid}_boris.tsv")
        write_boris_events(files[-1], binary, behaviors, fps, observation=vid, media_file=video.file.path.name,
                           description=f"mouse-pipeline predict ({predictor.name})")
    if overlay:
        from .overlay import SUFFIX as OVERLAY
        from .overlay import write_overlay

        files.append(write_overlay(video.file.path, out / f"{vid}{OVERLAY}", probs, binary, behaviors,
                                   fps, predictor.thresholds))
    return files, bouts


def sidecar(run: Path, model: dict, videos: list[dict]) -> dict:
    """What ``predictions.json`` holds (see the module docstring); ``model`` is
    :meth:`.Predictor.record`."""
    from . import __version__

    return {"version": 1, "package_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "run": str(Path(run).resolve()), **model,
            "files": ["bouts.csv", "summary.csv"], "videos": videos}


def _plain(value):
    """NumPy scalars as Python numbers, for JSON."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_folder_outputs(out: Path, run: Path, model: dict, bouts: list[dict], summary: list[dict],
                         videos: list[dict]) -> None:
    """``bouts.csv`` and ``summary.csv`` of all videos, then ``predictions.json`` last."""
    write_rows_csv(out / "bouts.csv", bouts, BOUT_COLUMNS)
    write_rows_csv(out / "summary.csv", summary, SUMMARY_COLUMNS)
    text = json.dumps(sidecar(run, model, videos), indent=1, allow_nan=False, default=_plain) + "\n"
    write_bytes(out / SIDECAR, text.encode())


def _extract_record(cache: str | Path, predictor: Predictor, videos: list[NewVideo]) -> dict[str, dict]:
    """Per stream, what made the embeddings: weights identity, input size, crop, precision
    (and a motion stream's ``motion`` settings)."""
    keys = ("weights", "input_size", "crop", "precision", "dtype")
    out = {}
    for backbone in predictor.streams:
        attrs = read_attrs(cache_path(cache, backbone, videos[0].file.video_id)) if videos else {}
        out[backbone] = {k: attrs.get(k) for k in keys + (("origin", "tool") if is_imported(attrs) else ())}
        if "motion" in attrs:
            out[backbone]["motion"] = attrs["motion"]
    return out


def with_pose(cfg: Config, pose_dir: str | Path | None) -> Config:
    """``cfg`` reading the new videos' pose files from ``pose_dir`` (for the crop, and for
    the pose stream when the run names a folder of its own for it); ``None``: as it is."""
    if pose_dir is None:
        return cfg
    return cfg.replace(**{"data.crop.pose": str(pose_dir), **(
        {"extract.pose_features.pose": str(pose_dir)} if cfg.extract.pose_features.pose else {})})


def predict_videos(run_dir: str | Path, videos: list[Path], out: str | Path,
                   model_name: str | None = None, progress: bool = True,
                   pose_dir: str | Path | None = None, resample: bool = False,
                   allow_fps_mismatch: bool = False, cache: str | Path | None = None,
                   formats: tuple[str, ...] = ("csv",), overlay: bool = False,
                   ray: str | None = None, fps: float | None = None) -> list[Path]:
    """Predict every video and write the per-video files, ``bouts.csv``, ``summary.csv`` and
    ``predictions.json`` (last); return each video's first file (its predictions CSV with
    ``csv``).

    ``pose_dir`` is the folder of DeepLabCut files for these videos when the run crops
    around a body part or trained on the ``pose`` stream (default: the run's
    ``data.crop.pose``, or ``extract.pose_features.pose``). ``cache`` is the feature
    cache of these videos (default: the run's ``extract.cache``): where their embeddings
    are extracted to, and where their imported features (``cache import``) must be.
    ``ray``: extract and predict the new videos on Ray at this address (``""``:
    ``cluster.ray.address``; ``None``: here, also when the run was trained on Ray); this
    process then writes the files and imports no TensorFlow (:mod:`.cluster.predict_ray`).
    ``formats``: per-video files among :data:`FORMATS` (``csv``: predictions and bouts CSVs
    and the ethogram; ``nwb``: ``<stem>.nwb``; ``boris``: ``<stem>_boris.tsv``, BORIS events);
    ``overlay``: also a labelled video of each. ``fps``: the videos' frame rate where their
    containers record a wrong one (default: each container's rate).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise InputError(f"--format {', '.join(unknown) or '(none)'}: choose from {', '.join(FORMATS)}")
    from .cluster import with_ray

    run, out = RunFolder(run_dir), Path(out)
    cfg = with_ray(run.read_config().replace(**{"cluster.ray.enabled": False}), ray)
    train_cache = cfg.extract.cache
    cfg = with_pose(cfg, pose_dir)
    if cache is not None:
        cfg = cfg.replace(**{"extract.cache": str(Path(cache).absolute())})
    predictor = choose(run, cfg, model_name)
    with _engine(cfg, progress) as ray_mod:
        new = prepare_videos(run, cfg, predictor, videos, resample, allow_fps_mismatch, progress, train_cache, fps)
        if ray_mod is None:
            heads = load_heads(predictor)  # before any output: a damaged model file stops here
            results = (video_probabilities(predictor, heads, cfg.extract.cache, v) for v in new)
        else:  # each video a Ray task (mouse_pipeline.cluster.predict_ray); no model here
            from .cluster.predict_ray import probabilities_on_ray

            results = probabilities_on_ray(ray_mod, cfg, predictor, new)
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        try:
            with contextlib.closing(results):
                done, all_bouts, summary, written = _write_videos(out, new, results, cfg, predictor, formats, overlay)
        except BaseException:
            if created and not any(out.iterdir()):  # failed before its first file: leave no empty folder
                out.rmdir()
            raise
    record = {**predictor.record(), "extract": _extract_record(cfg.extract.cache, predictor, new)}
    write_folder_outputs(out, run.path, record, all_bouts, summary, done)
    return written


@contextlib.contextmanager
def _engine(cfg: Config, progress: bool) -> Iterator[Any]:
    """The Ray session of ``predict --ray`` (extraction and prediction share it), or None: here."""
    if not cfg.cluster.ray.enabled:
        from .devices import describe

        log.info("predict runs %s", describe())
        yield None
        return
    from .cluster.ray_runtime import connect

    log.info("predict runs on Ray (%s): extraction and each video's prediction in its workers",
             cfg.cluster.ray.address)
    with connect(cfg.cluster.ray, log_to_driver=progress) as ray_mod:
        yield ray_mod


def _write_videos(out: Path, new: list[NewVideo], results: Iterator[tuple[np.ndarray, np.ndarray]], cfg: Config,
                  predictor: Predictor, formats: tuple[str, ...], overlay: bool) -> tuple[list, list, list, list]:
    """Each video's files from its ``(probabilities, 0/1 labels)`` (``results``, in order);
    the videos' records, bout rows, summary rows and first files."""
    behaviors = predictor.members[0].behaviors
    written, summary, all_bouts, done = [], [], [], []
    for video in new:
        vid, fps = video.file.video_id, video.fps
        try:
            probs, binary = next(results)
            files, bouts = write_video_files(out, video, cfg, predictor, probs, binary, formats, overlay)
        except BaseException:
            if done:
                log.warning("predict stopped at video %s; finished before it (their files are whole; no "
                            "bouts.csv, summary.csv or predictions.json was written): %s", vid,
                            ", ".join(d["video"] for d in done))
            raise
        all_bouts.extend(bouts)
        summary.extend(summary_rows(vid, binary, behaviors, fps))
        done.append({"video": vid, "source": str(video.file.path.resolve()), "fps": fps,
                     "resampled_to_fps": video.resample_to, "n_frames": int(probs.shape[0]),
                     "files": [f.name for f in files]})
        written.append(files[0])
        log.info("%s: %d frames predicted -> %s", vid, probs.shape[0], files[0])
    return done, all_bouts, summary, written
