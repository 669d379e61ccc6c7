"""What ``predict`` applies to a new video: which final model(s), which thresholds, at which rate.

``--model`` chooses a :class:`Predictor`:

``backbone/model``
    That final model with the post-processing chosen on its validation videos.
(none)
    The only model of the run, or the one with the best mean cross-validated PR-AUC in
    the report's ``metrics.json``.
``ensemble``
    Per behaviour, a weighted mean of every final model's probabilities but ``auto``'s (as
    the report's ensemble), the weights (:func:`.ensemble.select_weights`), thresholds and
    post-processing chosen on the final models' validation probabilities (never on
    anything else).
``per-behavior``
    For each behaviour, the final model with the best cross-validated PR-AUC for it in
    ``metrics.json``, with that model's post-processing.

Frame rates: windows, gap closing and minimum bout lengths are counted in frames, so a
model applies to videos at the frame rate it was trained at. :func:`check_rate` refuses
another rate unless the user resamples (:class:`Resampling`: the video's embeddings are
taken at the training rate, predicted, and mapped back to the video's own frames) or
explicitly accepts the mismatch.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import check_length, read_labels
from .config import Config
from .ensemble import select_weights
from .errors import InputError, RunError
from .postprocess import choose_postprocess_per_behavior
from .runs import POST_KEYS, FinalModel, RunFolder, read_probs
from .streams import all_streams, input_sets, streams_of

log = logging.getLogger(__name__)

ENSEMBLE, PER_BEHAVIOR = "ensemble", "per-behavior"
#: Relative difference of frame rates taken as the same rate (29.97 vs 30 frames/s).
RATE_TOLERANCE = 0.01


@dataclass(frozen=True)
class Predictor:
    """The final models a prediction needs and how their probabilities combine.

    ``source[j]`` is the member whose column ``j`` is behaviour ``j``'s probability, or
    None for the mean of every member's column: weighted by ``weights[j]`` (one weight per
    member) where ``weights`` is given, equal weights otherwise.
    """

    name: str
    members: tuple[FinalModel, ...]
    source: tuple[int | None, ...]
    thresholds: tuple[float, ...]
    max_gap: tuple[int, ...]
    min_len: tuple[int, ...]
    weights: tuple[tuple[float, ...], ...] | None = None

    @property
    def backbones(self) -> list[str]:
        """The members' backbones (input sets: :mod:`.streams`)."""
        return list(dict.fromkeys(m.backbone for m in self.members))

    @property
    def streams(self) -> list[str]:
        """Every cached stream the members read (what predict must extract or find imported)."""
        return all_streams(self.backbones)

    def combine(self, member_probs: list[np.ndarray]) -> np.ndarray:
        """Per-frame probabilities from each member's ``(n_frames, K)`` probabilities."""
        k = len(self.source)
        weights = self.weights or ((1.0 / len(self.members),) * len(self.members),) * k
        cols = [sum(w * np.asarray(p[:, j], np.float64) for w, p in zip(weights[j], member_probs, strict=True))
                if s is None else member_probs[s][:, j] for j, s in enumerate(self.source)]
        return np.stack(cols, axis=1).astype(np.float32)

    def record(self) -> dict[str, Any]:
        """Plain description for the predictions sidecar."""
        behaviors = self.members[0].behaviors
        return {"model": self.name, "members": [m.name for m in self.members],
                "streams": {m.name: list(streams_of(m.backbone)) for m in self.members},
                "behaviors": {b: {"model": self.members[s].name if s is not None else ENSEMBLE,
                                  "threshold": self.thresholds[j], "max_gap": self.max_gap[j],
                                  "min_len": self.min_len[j],
                                  **({"weights": {m.name: w for m, w in zip(self.members, self.weights[j], strict=True)}}
                                     if s is None and self.weights else {})}
                              for j, (b, s) in enumerate(zip(behaviors, self.source, strict=True))}}


def _single(final: FinalModel) -> Predictor:
    return Predictor(final.name, (final,), (0,) * len(final.behaviors), final.thresholds,
                     final.max_gap, final.min_len)


def ensemble_members(names: list[str]) -> list[str]:
    """The models (``backbone/model``) an ensemble averages: every one but ``auto``, which in
    each fold *is* one of the kinds beside it (averaged too, it would count that kind twice)."""
    return [n for n in names if n != ENSEMBLE and n.rsplit("/", 1)[-1] != "auto"]


def choose(run: RunFolder, cfg: Config, model_name: str | None) -> Predictor:
    """The predictor named by ``--model`` (see the module docstring)."""
    combos = [(b, m) for b in input_sets(cfg) for m in cfg.train.models]
    names = [f"{b}/{m}" for b, m in combos]
    choices = ", ".join([*names, ENSEMBLE, PER_BEHAVIOR] if len(names) > 1 else names)
    if model_name in (ENSEMBLE, PER_BEHAVIOR):
        if len(names) < 2:
            raise RunError(f"--model {model_name}: {run.path} has one model ({names[0]}); choose it")
        if model_name == ENSEMBLE:
            members = [c for c, n in zip(combos, names, strict=True) if n in ensemble_members(names)]
            if len(members) < 2:
                raise RunError(f"--model {ENSEMBLE}: {run.path} has fewer than two models other than auto "
                               f"(auto is, per fold, one of the kinds it chose from); choose one of {choices}")
            return _ensemble(run, cfg, [run.read_final(cfg, b, m) for b, m in members])
        return _per_behavior(run, [run.read_final(cfg, b, m) for b, m in combos])
    if model_name:
        if model_name not in names:
            raise RunError(f"--model {model_name!r}: not trained in {run.path}; choose one of {choices}")
        return _single(run.read_final(cfg, *model_name.split("/", 1)))
    if len(names) == 1:
        return _single(run.read_final(cfg, *combos[0]))
    scores = {n: s for n, s in run.model_scores().items() if n in names and not math.isnan(s)}
    if not scores:
        raise RunError(f"{run.path}: several models ({', '.join(names)}); run `mouse-pipeline report --run "
                       f"{run.path}` first so the best can be chosen, or pass --model ({choices})")
    best = max(names, key=lambda n: scores.get(n, -math.inf))
    log.info("using %s, the best by cross-validated PR-AUC (%.3f)", best, scores[best])
    return _single(run.read_final(cfg, *best.split("/", 1)))


def _per_behavior(run: RunFolder, finals: list[FinalModel]) -> Predictor:
    behaviors = finals[0].behaviors
    scores = run.behavior_scores()
    if not scores:
        raise RunError(f"{run.path}: --model {PER_BEHAVIOR} chooses by the report's cross-validated "
                       f"scores; run `mouse-pipeline report --run {run.path}` first")
    source = []
    for b in behaviors:  # the best score; among equal ones the first model
        best = max(range(len(finals)), key=lambda i: (scores.get((finals[i].name, b), -math.inf), -i))
        source.append(best)
        log.info("%s: %s (cross-validated PR-AUC %.3f)", b, finals[best].name,
                 scores.get((finals[best].name, b), -math.inf))
    return Predictor(PER_BEHAVIOR, tuple(finals), tuple(source),
                     *(tuple(getattr(finals[s], k)[j] for j, s in enumerate(source))
                       for k in ("thresholds", "max_gap", "min_len")))


def _ensemble(run: RunFolder, cfg: Config, finals: list[FinalModel]) -> Predictor:
    """The final models' weighted mean per behaviour, weights and post-processing chosen on
    their validation probabilities (validation videos, inner out-of-fold predictions or
    validation blocks)."""
    fold = finals[0].fold
    segments = fold.val_segments
    if not segments or any(m.fold.val_segments != segments for m in finals):
        raise RunError(f"{run.path}: the final models were not validated on the same videos; "
                       "train them again with --final in one run")
    behaviors = finals[0].behaviors
    val = [read_probs(m.folder, m.fold, behaviors)["val"] for m in finals]
    if any(set(v) != set(fold.val_videos) for v in val):
        raise RunError(f"{finals[0].folder}: no validation probabilities to choose the ensemble's "
                       "thresholds on; train the final models again")
    recorded = run.recorded_videos()
    labels = []
    for vid, start, stop in segments:
        if vid not in recorded or not recorded[vid].get("labels"):
            raise RunError(f"{run.path}: no record of the labels of validation video {vid!r}; train "
                           "the run again with this version")
        n = len(val[0][vid]) if stop is None else recorded[vid].get("n_frames")
        if not isinstance(n, int):
            raise RunError(f"{run.path}: no record of the frame count of validation video {vid!r}; "
                           "train the run again with this version")
        lab = read_labels(recorded[vid]["labels"], cfg.data.label_format, cfg.data.behaviors,
                          columns=dict(cfg.data.label_columns) or None, fps=float(recorded[vid]["fps"]),
                          n_frames=n)
        labels.append(check_length(lab, n, cfg.data.max_frame_mismatch, vid).matrix[start:stop])
    pick = select_weights(labels, [[v[vid] for vid, _, _ in segments] for v in val])
    for b, w, chosen in zip(behaviors, pick.weights, pick.chosen, strict=True):
        log.info("ensemble, %s: %s", b, ", ".join(f"{m.name} {x:.2f}" for m, x in zip(finals, w, strict=True) if x)
                 + ("" if chosen else " (equal: no positive or no negative validation frame to choose by)"))
    mean = [pick.mean([v[vid] for v in val]) for vid, _, _ in segments]
    post = choose_postprocess_per_behavior(behaviors, labels, mean, list(cfg.postprocess.max_gap),
                                           list(cfg.postprocess.min_len))
    return Predictor(ENSEMBLE, tuple(finals), (None,) * len(behaviors),
                     *(tuple(post[b][k] for b in behaviors) for k in POST_KEYS), weights=pick.weights)


# --------------------------------------------------------------------------- frame rates


def training_rate(run: RunFolder) -> float | None:
    """The frame rate the run's videos were trained at; None when they differ or are unknown."""
    rates = sorted({round(float(v["fps"]), 6) for v in run.recorded_videos().values() if v.get("fps")})
    if len(rates) == 1:
        return rates[0]
    if len(rates) > 1:
        log.warning("%s: the training videos have different frame rates (%s frames/s); frame rates "
                    "of new videos are not checked", run.path, ", ".join(f"{r:g}" for r in rates))
    return None


def check_rate(video: str, fps: float, train_fps: float | None, resample: bool,
               allow_mismatch: bool) -> float | None:
    """The rate to resample ``video`` to (None: predict at its own frames).

    Raises
    ------
    InputError
        The video's rate differs from the training rate and neither resampling nor the
        mismatch was asked for.
    """
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"{video}: no usable frame rate ({fps}); re-encode the video with its frame rate")
    if train_fps is None or abs(fps - train_fps) <= RATE_TOLERANCE * train_fps:
        return None
    if resample:
        log.info("%s: %g frames/s resampled to the training rate, %g frames/s", video, fps, train_fps)
        return train_fps
    if allow_mismatch:
        log.warning("%s: %g frames/s, but the models were trained at %g frames/s; windows, gap "
                    "closing and minimum bout lengths count frames, so they span %.2fx the time "
                    "they did in training", video, fps, train_fps, train_fps / fps)
        return None
    raise InputError(f"{video}: {fps:g} frames/s, but the run was trained at {train_fps:g} frames/s "
                     "(windows, gap closing and minimum bouts count frames); pass --resample to "
                     "predict at the training rate, or --allow-fps-mismatch")


def stated_rate(path: Path, fps: float) -> float:
    """``fps`` for ``path``, said in the log where its container records another rate."""
    from .video import container_fps

    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"--fps {fps}: must be a positive number of frames per second")
    recorded = container_fps(path)
    if not (math.isfinite(recorded) and abs(recorded - fps) <= RATE_TOLERANCE * fps):
        log.info("%s: %g frames/s as --fps says (its container records %g)", path.name, fps, recorded)
    return float(fps)


def _nearest(n_from: int, rate_from: float, n_to: int, rate_to: float) -> np.ndarray:
    """For each of ``n_to`` frames at ``rate_to``, the frame at ``rate_from`` nearest in time.

    Frame ``k`` of a rate covers the time ``[k, k + 1) / rate``; the nearest frame of the
    other rate is the one holding its centre, ``(k + 0.5) / rate`` (on a boundary between
    two: the earlier; the small slack keeps exact ratios such as 2:1 on the earlier one).
    Clipped to the ``n_from`` frames there are.
    """
    centre = (np.arange(n_to) + 0.5) * rate_from / rate_to  # in frames of rate_from
    return np.clip(np.ceil(centre - 1e-6).astype(np.int64) - 1, 0, n_from - 1)


class Resampling:
    """A video's frames taken at another rate (nearest frame), and the way back.

    Each frame at the target rate takes the video frame nearest it in time (:attr:`index`),
    and each video frame takes back the target frame nearest it (:attr:`back`). Taking the
    frame at a frame's start instead would lag: at 25 to 30 frames/s, 4 video frames in 5
    would get the prediction made from the frame before them.

    Parameters
    ----------
    n_frames, fps
        The video's own frame count and rate.
    target_fps
        The rate to take frames at.

    Attributes
    ----------
    index : numpy.ndarray
        Per frame at the target rate, the video frame it is taken from.
    back : numpy.ndarray
        Per video frame, the frame at the target rate whose prediction it gets.
    """

    def __init__(self, n_frames: int, fps: float, target_fps: float) -> None:
        m = max(1, int(round(n_frames * target_fps / fps)))
        self.index = _nearest(n_frames, fps, m, target_fps)
        self.back = _nearest(m, target_fps, n_frames, fps)

    def features(self, frames: Any) -> Any:
        """``frames`` as a frame source at the target rate."""
        return _Indexed(frames, self.index)

    def to_video(self, per_frame: np.ndarray) -> np.ndarray:
        """Rows at the target rate back on the video's own frames."""
        return per_frame[self.back]


class _Indexed:
    """Rows ``index`` of a frame source, sliced like an array."""

    def __init__(self, frames: Any, index: np.ndarray) -> None:
        self.frames, self.index = frames, index
        self.shape = (len(index), frames.shape[1])

    def __getitem__(self, key: slice) -> np.ndarray:
        rows = self.index[key]
        if not len(rows):
            return np.zeros((0, self.shape[1]), np.float32)
        lo, hi = int(rows.min()), int(rows.max()) + 1
        return np.asarray(self.frames[lo:hi], np.float32)[rows - lo]
