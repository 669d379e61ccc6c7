"""What ``review`` shows per video: the video file, its predictions and its annotations.

Predictions come from one of two places:

- the run's **out-of-fold** probabilities: each labelled video of the run was a test video
  of exactly one fold, so its probabilities come from a model that never trained on it;
  they are post-processed with that fold's thresholds, ``max_gap`` and ``min_len``
  (``postprocess.json``), as the report scores them;
- a **predictions folder** written by ``predict`` (``predictions.json`` and the
  ``<video>_predictions.csv`` files): probabilities and the 0/1 labels as written.

Annotations are the label files of the run's labels folder (or ``--labels``), read with the
run's label format and column mapping; a video without one is "not annotated" (``-1``)
everywhere.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..annotations import Labels, check_length, find_label_file, read_labels
from ..config import Config
from ..dataset import VideoFile, video_files
from ..errors import InputError, RunError
from ..features.store import sanitize_id
from ..postprocess import apply as apply_postprocess
from ..runs import RunFolder

log = logging.getLogger(__name__)

PREDICTIONS_SIDECAR = "predictions.json"  # predict.SIDECAR (predict imports the model stack)


@dataclass(frozen=True, eq=False)
class Predictions:
    """One video's predictions: probabilities, 0/1 labels, thresholds and where they came from."""

    probs: np.ndarray  # (n_frames, n_behaviours) float
    binary: np.ndarray  # (n_frames, n_behaviours) int8 0/1
    thresholds: tuple[float, ...]
    source: str


@dataclass(frozen=True, eq=False)
class ReviewVideo:
    """One video of a review session."""

    video_id: str
    path: Path
    fps: float
    n_frames: int
    annotations: Labels  # the original annotations (-1 where not annotated)
    predictions: Predictions | None


def run_predictions(run: RunFolder, cfg: Config, model: str | None) -> dict[str, Predictions]:
    """Out-of-fold test predictions of every labelled video of the run, for one model.

    ``model`` is ``backbone/model``; default: the only complete one, else the best by the
    report's cross-validated PR-AUC, else the first complete one.
    """
    folds = run.read_folds()
    behaviors = tuple(cfg.data.behaviors)
    wanted = {f.index for f in folds}
    complete = [n for n, done in run.find_models().items() if wanted <= set(done)]
    if not complete:
        raise RunError(f"{run.path}: no model has finished all {len(folds)} folds; run `mouse-pipeline "
                       "train` first (it resumes unfinished folds), or review a predictions folder")
    if model is not None and model not in complete:
        raise RunError(f"--model {model!r}: no complete model of that name in {run.path}; choose one "
                       f"of {', '.join(complete)}")
    if model is None:
        scores = {n: s for n, s in run.model_scores().items() if n in complete and not math.isnan(s)}
        # a model the report has not scored (finished since) is never the best of scored ones
        model = max(complete, key=lambda n: scores.get(n, -math.inf)) if scores else complete[0]
        if len(complete) > 1:
            log.info("showing %s's out-of-fold predictions (%s); --model chooses another", model,
                     "best cross-validated PR-AUC" if scores else "no report yet: the first")
    out: dict[str, Predictions] = {}
    for fold in folds:
        result = run.read_fold(model, fold, behaviors)
        thresholds = tuple(float(result.post[b]["threshold"]) for b in behaviors)
        max_gap = [int(result.post[b]["max_gap"]) for b in behaviors]
        min_len = [int(result.post[b]["min_len"]) for b in behaviors]
        for vid, probs in result.test.items():
            binary = apply_postprocess(probs, thresholds, max_gap, min_len)
            out[vid] = Predictions(probs, binary, thresholds,
                                   f"{model}, out-of-fold (test video of fold {fold.index})")
    return out


def folder_predictions(folder: Path, behaviors: tuple[str, ...]) -> tuple[dict[str, Predictions],
                                                                            dict[str, dict]]:
    """The predictions of a ``predict`` output folder, and its per-video records."""
    sidecar = folder / PREDICTIONS_SIDECAR
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--predictions {folder}: no {PREDICTIONS_SIDECAR}, so not a finished "
                         "`mouse-pipeline predict` folder; run predict again") from None
    except (OSError, ValueError) as err:
        raise InputError(f"{sidecar}: not readable JSON ({err}); run predict again") from None
    per_behavior = record.get("behaviors") if isinstance(record, dict) else None
    videos = record.get("videos") if isinstance(record, dict) else None
    if not isinstance(per_behavior, dict) or not isinstance(videos, list):
        raise InputError(f"{sidecar}: no 'behaviors' and 'videos' records; run predict again")
    missing = [b for b in behaviors if b not in per_behavior]
    if missing:
        raise InputError(f"{sidecar}: predictions of {sorted(per_behavior)}, not of the run's {missing}; "
                         "review them with the run that made them")
    thresholds = tuple(float(per_behavior[b]["threshold"]) for b in behaviors)
    out, records = {}, {}
    for entry in videos:
        vid = str(entry.get("video"))
        path = folder / f"{vid}_predictions.csv"
        probs, binary = _read_predictions_csv(path, behaviors)
        out[vid] = Predictions(probs, binary, thresholds, f"{record.get('model', '?')}, {path.name}")
        records[vid] = entry
    return out, records


def _read_predictions_csv(path: Path, behaviors: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as err:
        raise InputError(f"{path}: cannot read it ({err.strerror or err}); run predict again") from None
    need = [f"p_{b}" for b in behaviors] + list(behaviors)
    if not rows or any(c not in rows[0] for c in need):
        raise InputError(f"{path}: no rows with columns {need}; run predict again")
    try:
        probs = np.array([[float(r[f"p_{b}"] or "nan") for b in behaviors] for r in rows])
        binary = np.array([[int(r[b]) for b in behaviors] for r in rows], dtype=np.int8)
    except ValueError as err:
        raise InputError(f"{path}: a cell is not a number ({err}); run predict again") from None
    return probs, binary


def load_videos(run_dir: str | Path, videos: list[Path] | None = None, labels: Path | None = None,
                predictions: Path | None = None, model: str | None = None) -> tuple[Config, list[ReviewVideo]]:
    """The run's config and the videos to review, with predictions and annotations.

    Parameters
    ----------
    run_dir
        The run folder.
    videos
        Video files or folders to review; default: the run's labelled videos and the videos
        of ``predictions``.
    labels
        The annotations folder; default: the run's ``data.labels``.
    predictions
        A ``predict`` output folder, for videos that are not the run's labelled videos.
    model
        Which model's out-of-fold predictions to show (``backbone/model``).

    Raises
    ------
    RunError, InputError
        The run or predictions folder is unreadable, or a video cannot be found.
    """
    run = RunFolder(run_dir)
    cfg = run.read_config()
    behaviors = tuple(cfg.data.behaviors)
    recorded = run.recorded_videos()
    has_folds = run.folds_file.is_file()
    preds = run_predictions(run, cfg, model) if has_folds else {}
    records: dict[str, dict] = {}
    if predictions is not None:
        folder_preds, records = folder_predictions(Path(predictions), behaviors)
        preds = {**preds, **folder_preds}
    files = video_files(list(videos)) if videos else _recorded_files(run, recorded, records)
    labels_dir = Path(labels) if labels is not None else (Path(cfg.data.labels) if cfg.data.labels else None)
    out = []
    for f in files:
        vid = f.video_id
        _check_same_video(f, (recorded.get(vid) or {}).get("video"), "the run's labelled video",
                          "out-of-fold predictions and labels")
        _check_same_video(f, (records.get(vid) or {}).get("source"), f"the video predicted in {predictions}",
                          "predictions")
        pred = preds.get(vid)
        fps = _fps(cfg, recorded.get(vid) or records.get(vid) or {}, f.path)
        n_frames = pred.probs.shape[0] if pred is not None else _count_frames(f.path)
        annotations = _annotations(cfg, labels_dir, f, n_frames, fps, recorded.get(vid, {}).get("labels")
                                   if labels is None else None)
        out.append(ReviewVideo(vid, f.path, fps, n_frames, annotations, pred))
    log.info("review: %d video(s), %d with predictions", len(out), sum(v.predictions is not None for v in out))
    return cfg, out


def _recorded_files(run: RunFolder, recorded: dict[str, dict], records: dict[str, dict]) -> list[VideoFile]:
    """The run's labelled videos (``run.json``) and a predictions folder's (their ``source``)."""
    where = {vid: r.get("video") for vid, r in recorded.items()}
    where.update({vid: r.get("source") for vid, r in records.items()})
    if not where:
        raise InputError(f"{run.path}: no labelled video recorded and no --predictions folder; "
                         "pass --videos to review")
    files = []
    for vid, name in where.items():
        path = Path(str(name or ""))
        if not path.is_file():
            raise InputError(f"video {vid!r}: its file {path} is not there (moved?); pass --videos "
                             "with the folder that holds it")
        files.append(VideoFile(path, sanitize_id(path.stem)))
    return files


def _check_same_video(video: VideoFile, recorded: str | None, what: str, shown: str) -> None:
    """Refuse a video whose id names another file in the run or predictions folder.

    Predictions and labels are matched to a video by its id (its file name): a different
    recording with the same name would be shown, and its corrections would start from,
    another video's. The same file, or a copy of it (same size, first and last MiB), is
    that video; so is any file when the recorded one is not there any more (moved).

    Raises
    ------
    InputError
        ``recorded`` is an existing file other than ``video``'s.
    """
    if not recorded or not Path(recorded).is_file():
        return
    from ..video import same_video

    other = Path(recorded)
    if not same_video(video.path, other):
        raise InputError(f"{video.path}: its id {video.video_id!r} is that of {what} {other}, a different "
                         f"file: it would be shown that video's {shown}; rename this video to review it")


def _fps(cfg: Config, record: dict, path: Path) -> float:
    fps = record.get("fps")
    if isinstance(fps, (int, float)) and fps > 0:
        return float(fps)
    if cfg.data.fps:
        return float(cfg.data.fps)
    from ..video import container_fps

    return container_fps(path)


def _count_frames(path: Path) -> int:
    from ..video import probe_video

    return probe_video(path).n_frames


def _annotations(cfg: Config, folder: Path | None, video: VideoFile, n_frames: int, fps: float,
                 recorded: str | None) -> Labels:
    """The video's label file read as the run reads it, or all ``-1`` without one."""
    behaviors = tuple(cfg.data.behaviors)
    path = Path(recorded) if recorded and Path(recorded).is_file() else None
    if path is None and folder is not None and folder.is_dir():
        path = find_label_file(folder, video.stems)
    if path is None:
        return Labels(behaviors, np.full((n_frames, len(behaviors)), -1, np.int8))
    labels = read_labels(path, cfg.data.label_format, behaviors, columns=dict(cfg.data.label_columns) or None,
                         fps=fps, n_frames=n_frames)
    return check_length(labels, n_frames, cfg.data.max_frame_mismatch, video.video_id)
