"""Which stretches of unannotated video to annotate next (``mouse-pipeline suggest``).

Every video is cut into non-overlapping windows of ``window_s`` seconds (the last one may
be shorter). Every model of the run is applied to it: each fold's model and each final
model, of every backbone x sequence model (the *members*, reusing predict's extraction,
model loading and inference). Windows that hold an annotated frame (``--labels``) are
not candidates. A window's score is the sum of three terms, each in [0, 1]:

``near_threshold``
    How close the models are to their decision: per member ``m``, behaviour ``k`` and
    frame ``t``, ``1 - |p[m,t,k] - thr[m,k]| / max(thr[m,k], 1 - thr[m,k])`` (1 at the
    member's own threshold, chosen on its validation videos; 0 at 0 or 1), averaged
    over members.
``disagreement``
    How much the members disagree: ``2 * std over members of p[m,t,k]`` (0 with one
    member; 1 when half say 0 and half say 1).
``rare``
    Where a rare behaviour is expected: ``rarity[k] * mean over members of p[m,t,k]``,
    with ``rarity[k] = (1 / prevalence[k]) / max over j of (1 / prevalence[j])`` (1 for
    the rarest behaviour), prevalences over the annotated frames of the run's labelled
    videos.

Each term of a window is the mean over its frames, taken for the behaviour where it is
largest. ``score = near_threshold + disagreement + rare`` (0 to 3), and ``why`` names the
largest term and its behaviour (``disagreement:grooming``). The highest-scoring windows
are taken, best first, as long as their total stays within ``minutes``, and written to
``suggestions.csv``:

``rank, video, start_frame, end_frame, start_s, end_s, score, why, near_threshold,
disagreement, rare`` (end frame inclusive, ``end_s`` the end of its last frame).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import check_length, find_label_file, read_labels
from .config import Config
from .dataset import VideoFile, open_input
from .errors import InputError, RunError
from .predictor import Predictor
from .runs import FinalModel, RunFolder
from .scoring import write_rows_csv
from .streams import input_sets

log = logging.getLogger(__name__)

TERMS = ("near_threshold", "disagreement", "rare")
COLUMNS = ["rank", "video", "start_frame", "end_frame", "start_s", "end_s", "score", "why", *TERMS]


@dataclass(frozen=True)
class Window:
    """One candidate stretch of a video and its uncertainty terms."""

    video: str
    start: int  # first frame
    stop: int  # one past the last frame
    fps: float
    terms: dict[str, float]
    behaviors: dict[str, str]  # term -> the behaviour it was largest for

    @property
    def score(self) -> float:
        return float(sum(self.terms.values()))

    @property
    def why(self) -> str:
        term = max(TERMS, key=lambda t: self.terms[t])  # ties: the first in TERMS
        return f"{term}:{self.behaviors[term]}"

    def row(self, rank: int) -> dict:
        return {"rank": rank, "video": self.video, "start_frame": self.start, "end_frame": self.stop - 1,
                "start_s": round(self.start / self.fps, 4), "end_s": round(self.stop / self.fps, 4),
                "score": round(self.score, 6), "why": self.why,
                **{t: round(v, 6) for t, v in self.terms.items()}}


def frame_terms(member_probs: np.ndarray, thresholds: np.ndarray, rarity: np.ndarray) -> dict[str, np.ndarray]:
    """The three terms per frame and behaviour (see the module docstring).

    Parameters
    ----------
    member_probs
        ``(M, T, K)`` probabilities of M members.
    thresholds
        ``(M, K)`` each member's thresholds.
    rarity
        ``(K,)`` rarity weights in (0, 1].

    Returns
    -------
    dict
        ``term -> (T, K)`` array in [0, 1].
    """
    p = np.asarray(member_probs, np.float64)
    thr = np.asarray(thresholds, np.float64)[:, None, :]
    scale = np.maximum(thr, 1 - thr)
    near = np.clip(1 - np.abs(p - thr) / scale, 0, 1).mean(axis=0)
    spread = np.clip(2 * p.std(axis=0), 0, 1)
    rare = np.asarray(rarity, np.float64)[None, :] * p.mean(axis=0)
    return {"near_threshold": near, "disagreement": spread, "rare": rare}


def rarity_weights(prevalence: np.ndarray) -> np.ndarray:
    """``(1 / prevalence) / max(1 / prevalence)``; a behaviour never seen counts as the rarest."""
    prev = np.asarray(prevalence, np.float64)
    inv = np.where(prev > 0, 1 / np.where(prev > 0, prev, 1), np.inf)
    if np.isinf(inv).any():
        return np.where(np.isinf(inv), 1.0, 0.0)
    return inv / inv.max()


def score_windows(video: str, fps: float, terms: dict[str, np.ndarray], behaviors: tuple[str, ...],
                  length: int, annotated: np.ndarray | None = None) -> list[Window]:
    """The candidate windows of one video: every ``length`` frames, none with an annotated frame.

    ``annotated`` is a ``(T,)`` bool array (True: some behaviour of that frame is annotated).
    """
    n = next(iter(terms.values())).shape[0]
    out = []
    for start in range(0, n, length):
        stop = min(start + length, n)
        if annotated is not None and annotated[start:stop].any():
            continue
        means = {t: terms[t][start:stop].mean(axis=0) for t in TERMS}
        best = {t: int(np.argmax(means[t])) for t in TERMS}
        out.append(Window(video, start, stop, fps, {t: float(means[t][best[t]]) for t in TERMS},
                          {t: behaviors[best[t]] for t in TERMS}))
    return out


def choose_windows(windows: list[Window], minutes: float) -> list[Window]:
    """The best windows (highest score first; ties: earlier video and frame) whose total
    length stays within ``minutes``."""
    budget, used, chosen = minutes * 60.0, 0.0, []
    for w in sorted(windows, key=lambda w: (-w.score, w.video, w.start)):
        seconds = (w.stop - w.start) / w.fps
        if used + seconds <= budget + 1e-9:
            chosen.append(w)
            used += seconds
    return chosen


def write_suggestions(path: str | Path, windows: list[Window]) -> None:
    """``suggestions.csv`` (columns :data:`COLUMNS`), written beside and renamed."""
    write_rows_csv(Path(path), [w.row(i + 1) for i, w in enumerate(windows)], COLUMNS)


# --------------------------------------------------------------------------- the run's members


def run_members(run: RunFolder, cfg: Config) -> list[FinalModel]:
    """Every fold model and final model of every backbone x model of the run."""
    members = []
    folds = run.read_folds()
    for b in input_sets(cfg):
        for m in cfg.train.models:
            for fold in folds:
                if run.is_complete(run.unit(b, m, fold.index)):
                    members.append(run.read_model(cfg, b, m, fold.index))
            if run.is_complete(run.unit(b, m, -1)):
                members.append(run.read_model(cfg, b, m, -1))
    if not members:
        raise RunError(f"{run.path}: no finished fold or final model to suggest with; train the run first")
    return members


def prevalence(run: RunFolder, cfg: Config) -> np.ndarray:
    """Per behaviour, the fraction of positive frames among the annotated frames of the
    run's labelled videos (``run.json``)."""
    behaviors = tuple(cfg.data.behaviors)
    recorded = run.recorded_videos()
    if not recorded:
        raise RunError(f"{run.path}: no record of its labelled videos (run.json), so behaviours' "
                       "prevalences are unknown; train the run again with this version")
    pos, seen = np.zeros(len(behaviors)), np.zeros(len(behaviors))
    for vid, rec in sorted(recorded.items()):
        if not rec.get("labels") or not Path(rec["labels"]).is_file():
            raise RunError(f"{run.path / 'run.json'}: label file of {vid!r} ({rec.get('labels')}) is gone; "
                           "restore it (suggest weighs rare behaviours by their prevalence)")
        lab = read_labels(rec["labels"], cfg.data.label_format, behaviors,
                          columns=dict(cfg.data.label_columns) or None, fps=float(rec["fps"]),
                          n_frames=_recorded_frames(rec) if cfg.data.label_format.startswith("boris") else None)
        pos += (lab.matrix == 1).sum(axis=0)
        seen += (lab.matrix != -1).sum(axis=0)
    return np.divide(pos, seen, out=np.zeros_like(pos), where=seen > 0)


def _recorded_frames(rec: dict) -> int | None:
    """The frame count of a recorded video, for BORIS label files (None when unknown)."""
    from .video import probe_video

    video = rec.get("video")
    return probe_video(video).n_frames if video and Path(video).is_file() else None


def annotated_frames(cfg: Config, labels_dir: Path, video: VideoFile, n_frames: int, fps: float) -> np.ndarray:
    """``(n_frames,)`` True where the video's label file in ``labels_dir`` annotates a frame
    (all False when the video has no label file there). The file is found as training finds
    it: by the video's real stem or by its id (``mouse 1.mp4``: ``mouse 1.csv`` or
    ``mouse_1.csv``)."""
    path = find_label_file(labels_dir, video.stems)
    if path is None:
        return np.zeros(n_frames, bool)
    lab = read_labels(path, cfg.data.label_format, tuple(cfg.data.behaviors),
                      columns=dict(cfg.data.label_columns) or None, fps=fps, n_frames=n_frames)
    lab = check_length(lab, n_frames, cfg.data.max_frame_mismatch, video.video_id)
    return (lab.matrix != -1).any(axis=1)


def suggest(run_dir: str | Path, videos: list[Path], out: str | Path, minutes: float = 10.0,
            window_s: float = 60.0, labels_dir: str | Path | None = None,
            progress: bool = True, pose_dir: str | Path | None = None) -> list[Window]:
    """Rank the windows of ``videos`` by the run's uncertainty; write the best ``minutes`` of
    them to ``out`` (``suggestions.csv``) and return them.

    ``labels_dir``: a folder of label files (the run's label format); windows holding a
    frame annotated there are skipped. ``pose_dir``: the videos' pose files, when the run
    crops around a body part or uses pose features (default: the run's, as ``predict``).
    Videos must be at the run's training frame rate.
    """
    from .predict import load_heads, member_probabilities, prepare_videos, with_pose

    if not (minutes > 0 and math.isfinite(minutes)):
        raise InputError(f"--minutes {minutes}: must be a positive number of minutes")
    if not (window_s > 0 and math.isfinite(window_s)):
        raise InputError(f"--window-s {window_s}: must be a positive number of seconds")
    run = RunFolder(run_dir)
    cfg = with_pose(run.read_config(), pose_dir)
    members = run_members(run, cfg)
    behaviors = members[0].behaviors
    rarity = rarity_weights(prevalence(run, cfg))
    log.info("suggest: %d model(s); rarity weights %s", len(members),
             ", ".join(f"{b} {r:.2f}" for b, r in zip(behaviors, rarity, strict=True)))
    k = len(behaviors)
    group = Predictor("suggest", tuple(members), (None,) * k, members[0].thresholds,
                      members[0].max_gap, members[0].min_len)
    new = prepare_videos(run, cfg, group, videos, False, False, progress)
    heads = load_heads(group)
    thresholds = np.array([m.thresholds for m in members])
    candidates = []
    for video in new:
        vid = video.file.video_id
        length = max(1, int(round(window_s * video.fps)))
        probs = []
        for member, loaded in zip(members, heads, strict=True):
            features = open_input(cfg.extract.cache, member.backbone, vid)
            try:
                features.check_finite()
                probs.append(member_probabilities(member, loaded, features))
            finally:
                features.close()
        terms = frame_terms(np.stack(probs), thresholds, rarity)
        n = probs[0].shape[0]
        annotated = (annotated_frames(cfg, Path(labels_dir), video.file, n, video.fps)
                     if labels_dir is not None else None)
        found = score_windows(vid, video.fps, terms, behaviors, length, annotated)
        log.info("%s: %d frames, %d candidate window(s) of %d frames", vid, n, len(found), length)
        candidates.extend(found)
    if not candidates:
        raise InputError("no unannotated window to suggest: every window of the videos holds an "
                         "annotated frame" + (f" in {labels_dir}" if labels_dir is not None else ""))
    chosen = choose_windows(candidates, minutes)
    if not chosen:
        shortest = min((w.stop - w.start) / w.fps for w in candidates)
        raise InputError(f"--minutes {minutes:g}: shorter than every window ({shortest:g} s); ask for "
                         "more minutes or a shorter --window-s")
    write_suggestions(out, chosen)
    return chosen
