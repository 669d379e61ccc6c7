"""One scheduler for stage 2: every trial of every unfinished fold, inline or in workers.

A *unit* is one (backbone, model, fold); its *trials* are the hyperparameter candidates
of :func:`.search.search_trials`. The scheduler submits every trial of every unfinished
unit to a runner, in the order a sequential run takes them, and as results come in keeps
each unit's best trial (ties to the earlier trial) and, once a unit's last trial is in,
writes its fold folder: thresholds and post-processing chosen on the validation videos,
then the test videos predicted once. Finished units are skipped, so a killed run resumes.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from .. import devices
from ..config import Config, TrainConfig
from ..dataset import VideoData, load_dataset, load_into_memory
from ..folds import Fold
from ..postprocess import choose_postprocess_per_behavior
from ..runs import RunFolder
from .fit import FitResult, PackedHead, fit_trial, format_seconds
from .inference import predict_heads
from .models import save_model
from .search import search_trials, trial_config
from .windows import inference_stride
from .workers import WorkerPool, cpu_count

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """One (backbone, model, fold) to train, with its label in progress lines."""

    backbone: str
    kind: str
    fold: Fold
    label: str


def unit_label(backbone: str, kind: str, fold: Fold, n_folds: int) -> str:
    return f"[{backbone}/{kind}] " + ("final" if fold.index < 0 else f"fold {fold.index + 1}/{n_folds}")


class VideoStore:
    """The videos of one backbone at a time, in memory when they fit ``train.memory_gb``."""

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
    """Trials fitted in this process, in submission order, as results are asked for."""

    def __init__(self, cfg: Config, videos: VideoStore, progress: bool) -> None:
        self.cfg, self.videos, self.progress = cfg, videos, progress
        self.queue: list[tuple[Any, Unit, int, dict[str, Any]]] = []

    def __enter__(self) -> InlineRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.queue.clear()

    def submit(self, key: Any, unit: Unit, t: int, params: dict[str, Any]) -> None:
        self.queue.append((key, unit, t, params))

    def results(self) -> Iterator[tuple[Any, float, list[FitResult]]]:
        while self.queue:
            key, unit, t, params = self.queue.pop(0)
            heads = fit_trial(self.cfg, unit.kind, self.videos.get(unit.backbone), unit.fold, t, params,
                              unit.label, self.progress)
            yield key, float(np.mean([h.val_score for h in heads])), heads


class _WorkerState:
    """What a worker process keeps between its tasks: one backbone's videos."""

    videos: VideoStore | None = None

    @classmethod
    def store(cls, cfg: Config) -> VideoStore:
        if cls.videos is None or cls.videos.cfg != cfg:
            cls.videos = VideoStore(cfg)
        return cls.videos


def _trial_in_worker(cfg: Config, unit: Unit, t: int, params: dict[str, Any],
                     progress: bool) -> tuple[float, list[PackedHead]]:
    """Worker task: fit trial ``t`` of one unit; its score and heads."""
    by_id = _WorkerState.store(cfg).get(unit.backbone)
    heads = fit_trial(cfg, unit.kind, by_id, unit.fold, t, params, unit.label, progress)
    return float(np.mean([h.val_score for h in heads])), [PackedHead.pack(h) for h in heads]


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

    def submit(self, key: Any, unit: Unit, t: int, params: dict[str, Any]) -> None:
        self.futures[self.pool.submit(_trial_in_worker, self.cfg, unit, t, params, self.progress)] = key

    def results(self) -> Iterator[tuple[Any, float, list[PackedHead]]]:
        for fut, (score, heads) in self.pool.completed(list(self.futures)):
            yield self.futures.pop(fut), score, heads


# --------------------------------------------------------------------------- scheduling


@dataclass
class _Progress:
    """Each unit's trial scores and best trial so far."""

    scores: dict[int, float] = field(default_factory=dict)
    best: tuple[float, int, list[Any]] | None = None

    def add(self, t: int, score: float, heads: list[Any]) -> None:
        self.scores[t] = score
        if self.best is None or score > self.best[0] or (score == self.best[0] and t < self.best[1]):
            self.best = (score, t, heads)


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
    trials = search_trials(cfg)
    videos = VideoStore(cfg)
    n_proc = min(cfg.train.workers, len(units) * len(trials))
    if n_proc > 1 and not cfg.cluster.ray.enabled:
        log.info("training %d trial(s) of %d fold(s) in %d worker processes", len(units) * len(trials),
                 len(units), n_proc)
    if cfg.cluster.ray.enabled:  # every trial a Ray task (mouse_pipeline.cluster.train_ray)
        from ..cluster.train_ray import RayRunner

        runner: Any = RayRunner(cfg, progress)
    else:
        runner = PoolRunner(cfg, n_proc, progress) if n_proc > 1 else InlineRunner(cfg, videos, progress)
    state = [_Progress() for _ in units]
    t_start, done = time.perf_counter(), 0
    try:
        with runner:
            for i, unit in enumerate(units):
                for t, params in enumerate(trials):
                    runner.submit((i, t), unit, t, params)
            for (i, t), score, heads in runner.results():
                unit = units[i]
                log.info("%s trial %d/%d %s: validation PR-AUC %.3f", unit.label, t + 1, len(trials),
                         trials[t] or "(defaults)", score)
                state[i].add(t, score, heads)
                del heads
                if len(state[i].scores) < len(trials):
                    continue
                _, bt, best = state[i].best
                state[i].best = None
                best = [h.unpack() if isinstance(h, PackedHead) else h for h in best]
                records = [{"trial": k, "params": trials[k], "val_pr_auc": state[i].scores[k]}
                           for k in range(len(trials))]
                write_unit(cfg, run, unit, best, trials[bt], records, videos.get(unit.backbone))
                done += 1
                log.info("%s done (%d/%d); run ETA %s", unit.label, done, len(units),
                         format_seconds((time.perf_counter() - t_start) / done * (len(units) - done)))
    finally:
        videos.close()


def write_unit(cfg: Config, run: RunFolder, unit: Unit, heads: list[FitResult], params: dict[str, Any],
               trials: list[dict[str, Any]], by_id: dict[str, VideoData]) -> None:
    """Choose post-processing on validation, predict test videos, commit the fold folder."""
    behaviors, fold = list(cfg.data.behaviors), unit.fold
    tcfg: TrainConfig = trial_config(cfg, params)
    length = tcfg.window.length
    stride = inference_stride(length, tcfg.window.inference_stride)

    def predict(v: str) -> np.ndarray:
        return predict_heads([(h.outputs, h.model) for h in heads], by_id[v].features, length, stride,
                             len(behaviors))

    val_probs = {v: predict(v) for v in fold.val}
    post = choose_postprocess_per_behavior(behaviors, [by_id[v].labels.matrix for v in fold.val],
                                           [val_probs[v] for v in fold.val],
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
                       "val_pr_auc": h.val_score, **h.history} for h in heads],
            "trials": trials, "params": params}, {
            "fit_seconds": float(sum(h.fit_seconds for h in heads)),
            "best_epochs": [h.best_epoch for h in heads],
            "inference_frames_per_s": float(n_test / infer_s) if n_test and infer_s > 0 else None,
            "train_frames": int(sum(by_id[v].n_frames for v in fold.train))},
            {**fold.to_dict(), "window": length, "inference_stride": stride})
