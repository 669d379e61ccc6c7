"""One scheduler for stage 2: every trial of every unfinished fold, inline or in workers.

A *unit* is one (backbone or input set, model, fold); its *trials* are those of
:func:`.search.unit_trials` (the hyperparameter candidates; under ``auto``, those of every
kind it searches). The scheduler submits every trial of every unfinished unit to a
runner, in the order a sequential run takes them, and as results come in keeps each
unit's best trial (ties to the earlier trial) and, once a unit's last trial is in, writes
its fold folder: thresholds and post-processing chosen on the fold's validation
probabilities (validation videos, inner out-of-fold predictions or validation blocks),
then the test videos predicted once. Finished units are skipped, so a killed run resumes.
Under ``inner_folds`` (and ``blocks`` with a refit) the trials only validate: once a
unit's trials are in, one more task refits its best trial on every training video, and
that refit is the fold's model (``k`` fits per trial and head, plus one refit per head).

Runners: :class:`InlineRunner` fits trials in this process one after another, when the
scheduler asks for the next result (``train.workers: 1``); :class:`PoolRunner` fits them
in ``train.workers`` spawned processes (:mod:`.workers`); with ``cluster.ray.enabled``
(``--ray``), ``mouse_pipeline.cluster.train_ray.RayRunner`` fits them as Ray tasks. All give the same results bit
for bit: seeds depend only on (seed, fold, trial, head), and the intra-op thread count is
TensorFlow's default in every process (oneDNN splits its sums by it).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import tensorflow as tf

from .. import devices
from ..config import Config, TrainConfig
from ..dataset import VideoData, load_dataset, load_into_memory
from ..folds import Fold
from ..postprocess import choose_postprocess_per_behavior
from ..runs import RunFolder
from .choice import inner_video_choice
from .fit import FitResult, PackedHead, TrialResult, fit_trial, format_seconds, refit_trial
from .inference import predict_heads
from .models import MODEL_KINDS, save_model
from .search import Trial, trial_config, unit_trials
from .windows import inference_stride
from .workers import WorkerPool, cpu_count

log = logging.getLogger(__name__)

#: The key of a unit's refit task, in place of a trial number.
REFIT = "refit"


@dataclass(frozen=True)
class Unit:
    """One (backbone, model, fold) to train, with its label in progress lines; ``backbone``
    is an input set's name (:mod:`mouse_pipeline.streams`), a backbone's when it has one stream."""

    backbone: str
    kind: str
    fold: Fold
    label: str


@dataclass(frozen=True)
class Task:
    """One trial of a unit to fit, or (``refit_epochs`` set) the refit of its best trial."""

    unit: Unit
    trial: Trial
    n_trials: int
    refit_epochs: tuple[int, ...] | None = None


def run_task(cfg: Config, by_id: dict[str, VideoData], task: Task, progress: bool) -> TrialResult | list[FitResult]:
    """A trial's result, or a refit's heads."""
    u = task.unit
    if task.refit_epochs is None:
        result = fit_trial(cfg, task.trial, task.n_trials, by_id, u.fold, u.label, progress)
        if u.kind == "auto" and cfg.train.auto.select == "inner_videos":
            result = inner_video_choice(cfg, task.trial, task.n_trials, by_id, u.fold, result, u.label, progress)
        return result
    return refit_trial(cfg, task.trial, task.n_trials, by_id, u.fold, list(task.refit_epochs), u.label, progress)


def unit_label(backbone: str, kind: str, fold: Fold, n_folds: int) -> str:
    return f"[{backbone}/{kind}] " + ("final" if fold.index < 0 else f"fold {fold.index + 1}/{n_folds}")


class VideoStore:
    """The videos of one backbone (input set) at a time, in memory when they fit ``train.memory_gb``.

    A set of several streams is each video's streams side by side (:func:`.dataset.load_dataset`):
    read per window from every stream's file, or concatenated once in memory."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.backbone: str | None = None
        self.by_id: dict[str, VideoData] = {}

    def get(self, backbone: str) -> dict[str, VideoData]:
        if backbone != self.backbone:
            self.close()
            videos = load_into_memory(load_dataset(self.cfg, backbone), self.cfg.train.memory_gb)
            self.backbone, self.by_id = backbone, {v.video_id: v for v in videos}
        return self.by_id

    def close(self) -> None:
        for v in self.by_id.values():
            if hasattr(v.features, "close"):
                v.features.close()
        self.backbone, self.by_id = None, {}


# --------------------------------------------------------------------------- runners


class InlineRunner:
    """Tasks fitted in this process, in submission order (a refit first), as results are
    asked for."""

    def __init__(self, cfg: Config, videos: VideoStore, progress: bool) -> None:
        self.cfg, self.videos, self.progress = cfg, videos, progress
        self.queue: list[tuple[Any, Task]] = []

    def __enter__(self) -> InlineRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.queue.clear()

    def submit(self, key: Any, task: Task) -> None:
        # a refit finishes its unit: it goes first, so the fold folder is written at once
        self.queue.insert(0, (key, task)) if task.refit_epochs is not None else self.queue.append((key, task))

    def results(self) -> Iterator[tuple[Any, Any]]:
        while self.queue:
            key, task = self.queue.pop(0)
            yield key, run_task(self.cfg, self.videos.get(task.unit.backbone), task, self.progress)


class _WorkerState:
    """What a worker process keeps between its tasks: one backbone's videos."""

    videos: VideoStore | None = None

    @classmethod
    def store(cls, cfg: Config) -> VideoStore:
        if cls.videos is None or cls.videos.cfg != cfg:
            cls.videos = VideoStore(cfg)
        return cls.videos


def _task_in_worker(cfg: Config, task: Task, progress: bool) -> TrialResult | list[PackedHead]:
    """Worker task: fit one trial (or refit) of one unit; its result with the heads packed."""
    out = run_task(cfg, _WorkerState.store(cfg).get(task.unit.backbone), task, progress)
    return out.pack() if isinstance(out, TrialResult) else [PackedHead.pack(h) for h in out]


def _configure_worker(inter_op_threads: int) -> None:
    """TensorFlow set-up of a worker process (run once, before its first trial).

    Only the inter-op pool is shrunk; the intra-op pool keeps TensorFlow's default size,
    the one a sequential run uses, so that ``train.workers`` does not change results.
    """
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    tf.config.experimental.enable_op_determinism()
    gpu_memory_growth()


def gpu_memory_growth() -> None:
    """Let several processes share a GPU (TensorFlow takes all its memory by default)."""
    if not devices.gpus():  # also the first look for CUDA, without its no-driver noise
        return
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # the GPU was initialised already: nothing left to set
        pass


class PoolRunner:
    """Trials fitted in ``n`` spawned worker processes; heads come back packed."""

    def __init__(self, cfg: Config, n: int, progress: bool) -> None:
        self.cfg, self.progress = cfg, progress
        self.pool = WorkerPool(n, setup=functools.partial(_configure_worker, max(1, cpu_count() // n)),
                               what="training")
        self.futures: dict[Any, Any] = {}

    def __enter__(self) -> PoolRunner:
        gpu_memory_growth()
        self.pool.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pool.__exit__(*exc)

    def submit(self, key: Any, task: Task) -> None:
        self.futures[self.pool.submit(_task_in_worker, self.cfg, task, self.progress)] = key

    def results(self) -> Iterator[tuple[Any, Any]]:
        while self.futures:  # tasks submitted meanwhile (refits) are waited for too
            fut, result = next(self.pool.completed(list(self.futures)))
            yield self.futures.pop(fut), result


# --------------------------------------------------------------------------- scheduling


@dataclass
class _Progress:
    """Each unit's trial scores and best trial so far (kept by the choice score where a
    trial has one: ``train.auto.select: inner_videos``)."""

    scores: dict[int, float] = field(default_factory=dict)
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    choices: dict[int, dict[str, Any]] = field(default_factory=dict)
    best: tuple[float, int, TrialResult] | None = None

    def add(self, t: int, result: TrialResult) -> None:
        score = result.score if result.choice_score is None else result.choice_score
        self.scores[t], self.records[t] = result.score, result.record
        if result.choice_record:
            self.choices[t] = result.choice_record
        if self.best is None or score > self.best[0] or (score == self.best[0] and t < self.best[1]):
            self.best = (score, t, result)


def schedule(cfg: Config, run: RunFolder, jobs: list[tuple[str, str, Fold]], n_folds: int,
             progress: bool) -> None:
    """Train every unfinished unit of ``jobs`` and write its fold folder."""
    units = []
    for b, m, fold in jobs:
        unit = Unit(b, m, fold, unit_label(b, m, fold, n_folds))
        if run.is_complete(run.unit(b, m, fold.index)):
            log.info("%s: already complete, skipped", unit.label)
        else:
            units.append(unit)
    if not units:
        return
    trials = {m: unit_trials(cfg, m, MODEL_KINDS) for m in {u.kind for u in units}}
    n_tasks = sum(len(trials[u.kind]) for u in units)
    videos = VideoStore(cfg)
    n_proc = min(cfg.train.workers, n_tasks)
    if n_proc > 1 and not cfg.cluster.ray.enabled:
        log.info("training %d trial(s) of %d fold(s) in %d worker processes", n_tasks, len(units), n_proc)
    if cfg.cluster.ray.enabled:  # every trial a Ray task (mouse_pipeline.cluster.train_ray)
        from ..cluster.train_ray import RayRunner

        runner: Any = RayRunner(cfg, progress)
    else:
        runner = PoolRunner(cfg, n_proc, progress) if n_proc > 1 else InlineRunner(cfg, videos, progress)
    state = [_Progress() for _ in units]
    records: dict[int, list[dict[str, Any]]] = {}
    refits: dict[int, tuple[int, TrialResult]] = {}
    t_start, done = time.perf_counter(), 0

    def finish(unit: Unit, best: TrialResult, trial: Trial, trial_records: list[dict[str, Any]], done: int) -> int:
        write_unit(cfg, run, unit, best, trial, trial_records, videos.get(unit.backbone))
        done += 1
        log.info("%s done (%d/%d); run ETA %s", unit.label, done, len(units),
                 format_seconds((time.perf_counter() - t_start) / done * (len(units) - done)))
        return done

    try:
        with runner:
            for i, unit in enumerate(units):
                for trial in trials[unit.kind]:
                    runner.submit((i, trial.index), Task(unit, trial, len(trials[unit.kind])))
            for (i, t), result in runner.results():
                unit, ts = units[i], trials[units[i].kind]
                if t == REFIT:  # the kept trial's heads, refitted on every training video
                    bt, best = refits.pop(i)
                    heads = [h.unpack() if isinstance(h, PackedHead) else h for h in result]
                    done = finish(unit, replace(best, heads=heads), ts[bt], records.pop(i), done)
                    continue
                what = (f"{ts[t].kind} " if unit.kind == "auto" else "") + str(ts[t].params or "(defaults)")
                log.info("%s trial %d/%d %s: validation PR-AUC %.3f%s", unit.label, t + 1, len(ts), what,
                         result.score, "" if result.choice_score is None else
                         f", held-out training videos PR-AUC {result.choice_score:.3f}")
                state[i].add(t, result)
                del result
                if len(state[i].scores) < len(ts):
                    continue
                _, bt, best = state[i].best
                state[i].best = None
                records[i] = [{"trial": k, **({"kind": ts[k].kind} if unit.kind == "auto" else {}),
                               "params": ts[k].params, "val_pr_auc": state[i].scores[k],
                               **({"validation": state[i].records[k]} if state[i].records[k] else {}),
                               **({"inner_videos": state[i].choices[k]} if k in state[i].choices else {})}
                              for k in range(len(ts))]
                if best.refit_epochs is None:
                    done = finish(unit, best.unpack(), ts[bt], records.pop(i), done)
                    continue
                log.info("%s: trial %d/%d kept; refit on every training video for %s epoch(s)",
                         unit.label, bt + 1, len(ts), "/".join(map(str, best.refit_epochs)))
                refits[i] = (bt, best)
                runner.submit((i, REFIT), Task(unit, ts[bt], len(ts), tuple(best.refit_epochs)))
    finally:
        videos.close()


def write_unit(cfg: Config, run: RunFolder, unit: Unit, result: TrialResult, trial: Trial,
               trials: list[dict[str, Any]], by_id: dict[str, VideoData]) -> None:
    """Choose post-processing on validation, predict test videos, commit the fold folder."""
    behaviors, fold, heads, params = list(cfg.data.behaviors), unit.fold, result.heads, trial.params
    tcfg: TrainConfig = trial_config(cfg, params)
    length = tcfg.window.length
    stride = inference_stride(length, tcfg.window.inference_stride)

    def predict(v: str) -> np.ndarray:
        return predict_heads([(h.outputs, h.model) for h in heads], by_id[v].features, length, stride,
                             len(behaviors))

    # validation probabilities: the kept heads' on validation videos, or those the
    # validating fits made (inner out-of-fold, blocks); never a test video's
    val_probs = {v: predict(v) for v in fold.val} if result.val_probs is None else result.val_probs
    segments = fold.val_segments
    post = choose_postprocess_per_behavior(behaviors, [by_id[v].labels.matrix[a:b] for v, a, b in segments],
                                           [val_probs[v] for v, _, _ in segments],
                                           list(cfg.postprocess.max_gap), list(cfg.postprocess.min_len))
    t0 = time.perf_counter()
    test_probs = {v: predict(v) for v in fold.test}
    infer_s = time.perf_counter() - t0
    n_test = sum(by_id[v].n_frames for v in fold.test)
    with run.fold_writer(unit.backbone, unit.kind, fold.index) as w:
        w.write_probs(behaviors, {"val": val_probs, "test": test_probs})
        for h in heads:
            save_model(h.model, w.model_path(None if len(heads) == 1 else behaviors[h.outputs[0]]))
        w.write_normalization(heads[0].mean, heads[0].std)
        w.write_records(post, {
            "heads": [{"outputs": [behaviors[i] for i in h.outputs], "best_epoch": h.best_epoch,
                       "val_pr_auc": result.head_scores[j] if result.head_scores else h.val_score,
                       **h.history} for j, h in enumerate(heads)],
            "trials": trials, "params": params,
            **({"kind": trial.kind, "selected_on": cfg.train.auto.select} if unit.kind == "auto" else {}),
            **({"validation": result.record} if result.record else {})}, {
            "fit_seconds": float(sum(h.fit_seconds for h in heads) + result.validation_seconds),
            "best_epochs": [h.best_epoch for h in heads],
            "inference_frames_per_s": float(n_test / infer_s) if n_test and infer_s > 0 else None,
            "train_frames": int(sum(by_id[v].n_frames for v in fold.train))},
            {**fold.to_dict(), "window": length, "inference_stride": stride})
