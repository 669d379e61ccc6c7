"""Stage 2: train sequence models on cached embeddings with honest per-video folds.

One run trains every combination of ``extract.backbones`` x ``train.models``. For each
combination and fold:

1. the fold's training videos give the standardisation statistics and positive weights;
2. every hyperparameter trial (``train.search``) is fitted on the training videos, with
   early stopping on the fold's *validation* videos (mean PR-AUC over behaviours);
3. the trial with the best validation PR-AUC is kept; thresholds and post-processing are
   chosen on the validation videos;
4. only then are the fold's test videos predicted, once, and their probabilities saved.

A test video never influences training, early stopping, thresholds or hyperparameters.

Run folder layout (``train.run``)::

    config.yaml                 resolved config of the run
    folds.json                  train / val / test videos of every fold
    <backbone>/<model>/fold_<i>/
        model.keras             (or model_<behaviour>.keras with train.heads: per_behavior)
        normalization.npz       mean and std of the training videos (also inside the model)
        postprocess.json        per behaviour: threshold, max_gap, min_len (from validation)
        history.json            per epoch: loss, validation PR-AUC; trials and their scores
        timings.json            fit seconds, best epoch, inference frames/s
        probs.h5                test/<video> and val/<video>: (n_frames, n_behaviours) float32
    <backbone>/<model>/final/   the same, trained on all labelled videos (``--final``)

A fold folder is built under ``fold_<i>.partial`` and renamed when complete, so a killed
run resumes by redoing only unfinished folds.

With ``train.workers`` > 1 the trials are fitted in that many spawned worker processes
(:mod:`.workers`) and the main process writes each fold from the best trial's models; the
results equal a sequential run's (see :func:`_train_in_workers`).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf
import yaml

from .. import devices
from ..config import Config, TrainConfig, config_from_dict, dump_config
from ..dataset import VideoData, load_dataset
from ..errors import RunError
from ..folds import Fold, check_no_leakage, check_positives, make_folds, save_folds
from ..locks import acquire_lock
from ..metrics import mean_pr_auc
from ..postprocess import choose_postprocess
from .models import CUSTOM_OBJECTS, build_model, check_window, positive_weights, save_model
from .windows import WindowIndex, stitch, window_starts
from .workers import WorkerPool, cpu_count

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- data


class WindowSequence(keras.utils.PyDataset):
    """Batches of training windows sliced from per-video arrays (nothing materialised).

    Padding past the end of a video is zero in x and -1 in y, so the masked loss
    ignores it, as it ignores frames labelled -1.
    """

    def __init__(self, xs: list[np.ndarray], ys: list[np.ndarray], length: int, stride: int,
                 batch_size: int, seed: int, shuffle: bool = True):
        super().__init__(workers=1, use_multiprocessing=False)
        self.xs, self.ys = xs, ys
        self.length, self.batch_size = length, batch_size
        self.index = WindowIndex([len(x) for x in xs], length, stride)
        self.pairs = np.asarray(list(self.index), dtype=np.int64).reshape(-1, 2)
        self.rng = np.random.default_rng(seed)
        self.shuffle = shuffle
        self.order = np.arange(len(self.pairs))
        if shuffle:
            self.rng.shuffle(self.order)

    def __len__(self) -> int:
        return math.ceil(len(self.pairs) / self.batch_size)

    def __getitem__(self, i: int):
        sel = self.pairs[self.order[i * self.batch_size:(i + 1) * self.batch_size]]
        dim, k = self.xs[0].shape[1], self.ys[0].shape[1]
        xb = np.zeros((len(sel), self.length, dim), np.float32)
        yb = np.full((len(sel), self.length, k), -1.0, np.float32)
        for j, (v, s) in enumerate(sel):
            chunk = self.xs[v][s:s + self.length]
            xb[j, :len(chunk)] = chunk
            yb[j, :len(chunk)] = self.ys[v][s:s + self.length]
        return xb, yb

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.rng.shuffle(self.order)


def predict_video(model: keras.Model, emb: np.ndarray, length: int, stride: int,
                  batch_windows: int = 64) -> np.ndarray:
    """Per-frame probabilities for a whole video from overlapping, blended windows.

    Windows of ``length`` frames every ``stride`` frames are predicted in chunks (memory
    bounded by ``batch_windows`` windows) and stitched with a taper, so a probability
    does not depend on where a window started.
    """
    n = emb.shape[0]
    starts = window_starts(n, length, stride)
    outs = []
    for c in range(0, len(starts), batch_windows):
        chunk = starts[c:c + batch_windows]
        xb = np.zeros((len(chunk), length, emb.shape[1]), np.float32)
        for j, s in enumerate(chunk):
            seg = emb[s:s + length]
            xb[j, :len(seg)] = seg
        outs.append(np.asarray(model(xb, training=False)))
    return stitch(np.concatenate(outs, axis=0), starts, n)


# --------------------------------------------------------------------------- one fit


@dataclass
class FitResult:
    """A fitted head (one model) with its validation record."""

    model: keras.Model
    outputs: list[int]
    history: dict[str, list[float]]
    best_epoch: int
    val_score: float
    fit_seconds: float
    mean: np.ndarray  # standardisation statistics of the training videos
    std: np.ndarray


class EarlyStopOnValidation(keras.callbacks.Callback):
    """Score validation videos (whole, stitched) each epoch; keep the best weights."""

    def __init__(self, val_x, val_y, length, stride, patience, label, progress):
        super().__init__()
        self.val_x, self.val_y = val_x, val_y
        self.length, self.stride, self.patience = length, stride, patience
        self.label, self.progress = label, progress
        self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, 0, None, 0
        self.history: dict[str, list[float]] = {"loss": [], "val_pr_auc": []}
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        probs = [predict_video(self.model, x, self.length, self.stride) for x in self.val_x]
        score = mean_pr_auc(self.val_y, probs)
        score = -np.inf if not np.isfinite(score) else score
        self.history["loss"].append(float((logs or {}).get("loss", np.nan)))
        self.history["val_pr_auc"].append(float(score))
        if score > self.best + 1e-6:
            self.best, self.best_epoch, self.wait = score, epoch + 1, 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
        per_epoch = (time.perf_counter() - self.t0) / (epoch + 1)
        total = self.params.get("epochs", epoch + 1)
        eta = per_epoch * (total - epoch - 1)
        if self.progress:
            log.info("%s epoch %d/%d loss %.4f val PR-AUC %.3f (best %.3f @%d) ETA <= %s",
                     self.label, epoch + 1, total, self.history["loss"][-1], score, self.best,
                     self.best_epoch, _fmt_seconds(eta))

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def fit_head(kind: str, tcfg: TrainConfig, train: list[VideoData], val: list[VideoData],
             outputs: list[int], seed: int, label: str, progress: bool) -> FitResult:
    """Fit one model on the training videos, early-stopped on the validation videos."""
    keras.utils.set_random_seed(seed)
    xs = [v.embeddings for v in train]
    ys = [v.labels.matrix[:, outputs].astype(np.float32) for v in train]
    stacked = np.concatenate(xs, axis=0)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    del stacked
    pos_w = positive_weights([y.astype(np.int8) for y in ys])
    model = build_model(kind, tcfg, xs[0].shape[1], len(outputs), mean, std ** 2, pos_w)
    length = tcfg.window.length
    stride = tcfg.window.inference_stride or max(1, length // 4)
    seq = WindowSequence(xs, ys, length, tcfg.window.stride, tcfg.batch_size, seed)
    monitor = EarlyStopOnValidation([v.embeddings for v in val],
                                    [v.labels.matrix[:, outputs] for v in val],
                                    length, stride, tcfg.patience, label, progress)
    t0 = time.perf_counter()
    model.fit(seq, epochs=tcfg.epochs, verbose=0, callbacks=[monitor], shuffle=False)
    return FitResult(model, outputs, monitor.history, monitor.best_epoch, float(monitor.best),
                     time.perf_counter() - t0, mean, std)


# --------------------------------------------------------------------------- search


def search_trials(cfg: Config) -> list[dict[str, Any]]:
    """Hyperparameter candidates: every grid point, or ``n_trials`` random ones (seeded)."""
    space = cfg.train.search.space
    if not space:
        return [{}]
    keys = sorted(space)
    grid = [dict(zip(keys, values, strict=False)) for values in itertools.product(*(space[k] for k in keys))]
    if cfg.train.search.method == "random" and cfg.train.search.n_trials < len(grid):
        rng = np.random.default_rng(cfg.train.seed)
        picks = sorted(rng.choice(len(grid), size=cfg.train.search.n_trials, replace=False))
        grid = [grid[i] for i in picks]
    return grid


def trial_config(cfg: Config, params: dict[str, Any]) -> TrainConfig:
    """The train section with one trial's values applied (validated again)."""
    return cfg.replace(**{f"train.{k}": v for k, v in params.items()}).train


# --------------------------------------------------------------------------- fold


@dataclass
class FoldOutcome:
    heads: list[FitResult]
    params: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)


def _heads_for(cfg: Config) -> list[list[int]]:
    k = len(cfg.data.behaviors)
    return [list(range(k))] if cfg.train.heads == "joint" else [[i] for i in range(k)]


def _predict(heads: list[FitResult], emb: np.ndarray, tcfg: TrainConfig, k: int) -> np.ndarray:
    length = tcfg.window.length
    stride = tcfg.window.inference_stride or max(1, length // 4)
    out = np.zeros((emb.shape[0], k), np.float32)
    for h in heads:
        out[:, h.outputs] = predict_video(h.model, emb, length, stride)
    return out


def fit_trial(cfg: Config, kind: str, by_id: dict[str, VideoData], fold: Fold, t: int,
              params: dict[str, Any], label: str, progress: bool) -> list[FitResult]:
    """Fit the heads of trial ``t`` (hyperparameters ``params``) on one fold.

    The seeds depend only on (seed, fold, trial, head), so a trial gives the same models
    whichever process fits it and whatever was fitted before it.
    """
    train = [by_id[v] for v in fold.train]
    val = [by_id[v] for v in fold.val]
    tcfg = trial_config(cfg, params)
    check_window(kind, tcfg)
    n_trials = len(search_trials(cfg))
    heads = []
    for h, outputs in enumerate(_heads_for(cfg)):
        seed = cfg.train.seed + 1000 * (fold.index + 1) + 100 * t + h  # final fold: index -1
        tag = f"{label} trial {t + 1}/{n_trials}" + (
            f" [{cfg.data.behaviors[outputs[0]]}]" if len(outputs) == 1 else "")
        heads.append(fit_head(kind, tcfg, train, val, outputs, seed, tag, progress))
    return heads


def train_fold(cfg: Config, kind: str, by_id: dict[str, VideoData], fold: Fold, label: str,
               progress: bool) -> tuple[FoldOutcome, TrainConfig]:
    """Run the search for one fold on its training/validation videos only."""
    best: tuple[float, FoldOutcome, TrainConfig] | None = None
    trials = search_trials(cfg)
    records = []
    for t, params in enumerate(trials):
        heads = fit_trial(cfg, kind, by_id, fold, t, params, label, progress)
        score = float(np.mean([h.val_score for h in heads]))
        records.append({"trial": t, "params": params, "val_pr_auc": score})
        log.info("%s trial %d/%d %s: validation PR-AUC %.3f", label, t + 1, len(trials), params or "(defaults)", score)
        if best is None or score > best[0]:
            best = (score, FoldOutcome(heads, params), trial_config(cfg, params))
    assert best is not None  # trials is never empty
    best[1].trials = records
    return best[1], best[2]


def _write_fold(cfg: Config, outcome: FoldOutcome, tcfg: TrainConfig, by_id: dict[str, VideoData],
                fold: Fold, target: Path) -> None:
    """Choose thresholds on validation, predict test videos, write the fold folder atomically."""
    behaviors = list(cfg.data.behaviors)
    k = len(behaviors)
    partial = target.with_name(target.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    val_probs = {v: _predict(outcome.heads, by_id[v].embeddings, tcfg, k) for v in fold.val}
    post = {}
    for j, b in enumerate(behaviors):
        params = choose_postprocess([by_id[v].labels.matrix[:, j] for v in fold.val],
                                    [val_probs[v][:, j] for v in fold.val],
                                    list(cfg.postprocess.max_gap), list(cfg.postprocess.min_len))
        post[b] = {"threshold": float(params.threshold), "max_gap": int(params.max_gap),
                   "min_len": int(params.min_len)}
    t0 = time.perf_counter()
    test_probs = {v: _predict(outcome.heads, by_id[v].embeddings, tcfg, k) for v in fold.test}
    infer_s = time.perf_counter() - t0
    n_test = sum(by_id[v].n_frames for v in fold.test)
    with h5py.File(partial / "probs.h5", "w") as f:
        f.attrs["behaviors"] = json.dumps(behaviors)
        for split, probs in (("val", val_probs), ("test", test_probs)):
            for v, p in probs.items():
                f.create_dataset(f"{split}/{v}", data=p, compression="gzip")
    for h in outcome.heads:
        name = "model.keras" if len(outcome.heads) == 1 else f"model_{behaviors[h.outputs[0]]}.keras"
        save_model(h.model, partial / name)
    np.savez(partial / "normalization.npz", mean=outcome.heads[0].mean, std=outcome.heads[0].std)
    _dump_json(partial / "postprocess.json", post)
    _dump_json(partial / "history.json", {
        "heads": [{"outputs": [behaviors[i] for i in h.outputs], "best_epoch": h.best_epoch,
                   "val_pr_auc": h.val_score, **h.history} for h in outcome.heads],
        "trials": outcome.trials, "params": outcome.params})
    _dump_json(partial / "timings.json", {
        "fit_seconds": float(sum(h.fit_seconds for h in outcome.heads)),
        "best_epochs": [h.best_epoch for h in outcome.heads],
        "inference_frames_per_s": float(n_test / infer_s) if n_test and infer_s > 0 else None,
        "train_frames": int(sum(by_id[v].n_frames for v in fold.train))})
    _dump_json(partial / "fold.json", {**fold.to_dict(), "window": tcfg.window.length,
                                       "inference_stride": tcfg.window.inference_stride or max(1, tcfg.window.length // 4)})
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)


# --------------------------------------------------------------------------- run


def _dump_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=float), encoding="utf-8")


def _fmt_seconds(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _prepare_run(cfg: Config, run: Path, overwrite: bool) -> None:
    stored = run / "config.yaml"
    if stored.exists() and not overwrite:
        old = config_from_dict(yaml.safe_load(stored.read_text(encoding="utf-8")), str(stored))
        mine, theirs = cfg.to_dict(), old.to_dict()
        mine["train"]["run"] = theirs["train"]["run"]
        if _comparable(mine) != _comparable(theirs):
            raise RunError(f"{run}: run folder was made with a different config; use another "
                           "--run folder, or --overwrite to start it again")
        log.info("resuming run %s: finished folds are kept", run)
    elif overwrite and run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, stored)


def _comparable(d: dict) -> dict:
    # Settings that do not change results may differ between a run and its resumption.
    d = json.loads(json.dumps(d))
    d["train"].pop("workers", None)
    return d


def train(cfg: Config, run_dir: str | Path | None = None, final: bool = False,
          progress: bool = True, overwrite: bool = False) -> Path:
    """Train every backbone x model over every fold (and ``final`` models); return the run folder."""
    run = Path(run_dir) if run_dir is not None else Path(cfg.train.run)
    if run_dir is not None:
        cfg = cfg.replace(**{"train.run": str(run)})
    for kind in cfg.train.models:
        for params in search_trials(cfg):
            check_window(kind, trial_config(cfg, params))
    run.parent.mkdir(parents=True, exist_ok=True)
    tf.config.experimental.enable_op_determinism()
    log.info("stage 2 runs %s", devices.describe())
    with acquire_lock(run.parent, name=f".{run.name}.lock"):
        _prepare_run(cfg, run, overwrite)
        datasets = {b: load_dataset(cfg, b) for b in cfg.extract.backbones}
        ids = [v.video_id for v in next(iter(datasets.values()))]
        for b, vids in datasets.items():
            if [v.video_id for v in vids] != ids:
                raise RunError(f"{cfg.extract.cache}/{b}: cached videos differ from those of "
                               f"{cfg.extract.backbones[0]}; extract every backbone for every video")
        f = cfg.train.folds
        folds = make_folds(ids, f.scheme, k=f.k, n_val=f.n_val, fixed_train=f.train,
                           fixed_test=f.test, seed=cfg.train.seed)
        check_no_leakage(folds)
        first = next(iter(datasets.values()))
        check_positives(folds, {v.video_id: v.labels for v in first})
        save_folds(run / "folds.json", folds)
        jobs = [(b, m, fold) for b in cfg.extract.backbones for m in cfg.train.models for fold in folds]
        if final:
            final_fold = _final_fold(ids, cfg)
            jobs += [(b, m, final_fold) for b in cfg.extract.backbones for m in cfg.train.models]
        if cfg.train.workers > 1:
            _train_in_workers(cfg, run, jobs, len(folds), datasets, progress)
            return run
        t_start, done = time.perf_counter(), 0
        for i, (b, m, fold) in enumerate(jobs):
            target, label = _unit_target(run, b, m, fold, len(folds))
            if (target / "fold.json").exists():
                log.info("%s: already complete, skipped", label)
                continue
            by_id = {v.video_id: v for v in datasets[b]}
            outcome, tcfg = train_fold(cfg, m, by_id, fold, label, progress)
            _write_fold(cfg, outcome, tcfg, by_id, fold, target)
            done += 1
            elapsed = time.perf_counter() - t_start
            left = len(jobs) - i - 1
            log.info("%s done (%d/%d); run ETA %s", label, i + 1, len(jobs),
                     _fmt_seconds(elapsed / done * left))
    return run


def _unit_target(run: Path, backbone: str, kind: str, fold: Fold, n_folds: int) -> tuple[Path, str]:
    """The folder of one (backbone, model, fold) and its label in progress lines."""
    name = "final" if fold.index < 0 else f"fold_{fold.index}"
    label = f"[{backbone}/{kind}] " + ("final" if fold.index < 0 else f"fold {fold.index + 1}/{n_folds}")
    return run / backbone / kind / name, label


# --------------------------------------------------------------------------- workers


@dataclass
class _PackedHead:
    """A fitted head as it travels from a worker to the parent (the model as .keras bytes)."""

    model: bytes
    outputs: list[int]
    history: dict[str, list[float]]
    best_epoch: int
    val_score: float
    fit_seconds: float
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def pack(cls, head: FitResult) -> _PackedHead:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            head.model.save(path)
            data = path.read_bytes()
        return cls(data, head.outputs, head.history, head.best_epoch, head.val_score,
                   head.fit_seconds, head.mean, head.std)

    def unpack(self) -> FitResult:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            path.write_bytes(self.model)
            model = keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=True,
                                            safe_mode=True)
        return FitResult(model, self.outputs, self.history, self.best_epoch, self.val_score,
                         self.fit_seconds, self.mean, self.std)


_WORKER_DATA: dict[str, dict[str, VideoData]] = {}  # a worker's dataset, one backbone at a time


def _configure_worker(inter_op_threads: int) -> None:
    """TensorFlow set-up of a worker process (run once, before its first trial).

    Only the inter-op pool is shrunk. The intra-op pool keeps TensorFlow's default size,
    the one a sequential run uses, because oneDNN splits its reductions by that number of
    threads: a TCN fitted with 1 and with 2 intra-op threads differs in the last bits, and
    ``train.workers`` must not change results.
    """
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    tf.config.experimental.enable_op_determinism()
    _gpu_memory_growth()


def _gpu_memory_growth() -> None:
    """Let several processes share a GPU (TensorFlow takes all its memory by default)."""
    if not devices.gpus():  # also the first look for CUDA, without its no-driver noise
        return
    try:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # the GPU was initialised already: nothing left to set
        pass


def _trial_in_worker(cfg: Config, backbone: str, kind: str, fold: Fold, t: int,
                     params: dict[str, Any], label: str, progress: bool) -> tuple[float, list[_PackedHead]]:
    """Worker task: fit trial ``t`` of one (backbone, model, fold); its score and heads."""
    if backbone not in _WORKER_DATA:
        _WORKER_DATA.clear()
        _WORKER_DATA[backbone] = {v.video_id: v for v in load_dataset(cfg, backbone)}
    heads = fit_trial(cfg, kind, _WORKER_DATA[backbone], fold, t, params, label, progress)
    score = float(np.mean([h.val_score for h in heads]))
    return score, [_PackedHead.pack(h) for h in heads]


def _train_in_workers(cfg: Config, run: Path, jobs: list[tuple[str, str, Fold]], n_folds: int,
                      datasets: dict[str, list[VideoData]], progress: bool) -> None:
    """Every trial of every unfinished (backbone, model, fold) in ``train.workers`` processes.

    Workers fit trials (in the order a sequential run would) and send back the score and
    the models; the parent keeps the best trial of each fold (ties to the earlier trial,
    as a sequential run) and writes the fold folder itself, as soon as the fold's last
    trial is in. Results equal a sequential run's: seeds depend only on (seed, fold,
    trial, head), and the intra-op thread count is TensorFlow's default in every process.
    """
    units = []
    for b, m, fold in jobs:
        target, label = _unit_target(run, b, m, fold, n_folds)
        if (target / "fold.json").exists():
            log.info("%s: already complete, skipped", label)
        else:
            units.append((b, m, fold, target, label))
    if not units:
        return
    trials = search_trials(cfg)
    n_proc = min(cfg.train.workers, len(units) * len(trials))
    inter = max(1, cpu_count() // n_proc)
    log.info("training %d trial(s) of %d fold(s) in %d worker processes", len(units) * len(trials),
             len(units), n_proc)
    _gpu_memory_growth()
    scores: list[dict[int, float]] = [{} for _ in units]
    best: list[tuple[float, int, list[_PackedHead]] | None] = [None] * len(units)
    t_start, done = time.perf_counter(), 0
    with WorkerPool(n_proc, setup=functools.partial(_configure_worker, inter), what="training") as pool:
        futures = {}
        for i, (b, m, fold, _, label) in enumerate(units):
            for t, params in enumerate(trials):
                fut = pool.submit(_trial_in_worker, cfg, b, m, fold, t, params, label, progress)
                futures[fut] = (i, t)
        for fut, (score, heads) in pool.completed(list(futures)):
            i, t = futures.pop(fut)
            b, m, fold, target, label = units[i]
            log.info("%s trial %d/%d %s: validation PR-AUC %.3f", label, t + 1, len(trials),
                     trials[t] or "(defaults)", score)
            scores[i][t] = score
            held = best[i]
            if held is None or score > held[0] or (score == held[0] and t < held[1]):
                best[i] = (score, t, heads)
            del heads
            if len(scores[i]) < len(trials):
                continue
            _, bt, packed = best[i]
            best[i] = None
            records = [{"trial": k, "params": trials[k], "val_pr_auc": scores[i][k]}
                       for k in range(len(trials))]
            outcome = FoldOutcome([h.unpack() for h in packed], trials[bt], records)
            by_id = {v.video_id: v for v in datasets[b]}
            _write_fold(cfg, outcome, trial_config(cfg, trials[bt]), by_id, fold, target)
            done += 1
            elapsed = time.perf_counter() - t_start
            log.info("%s done (%d/%d); run ETA %s", label, done, len(units),
                     _fmt_seconds(elapsed / done * (len(units) - done)))


def _final_fold(ids: list[str], cfg: Config) -> Fold:
    """All labelled videos: the last n_val (in seeded order) validate, the rest train."""
    rng = np.random.default_rng(cfg.train.seed)
    order = list(rng.permutation(ids))
    n_val = min(cfg.train.folds.n_val, len(ids) - 1)
    val = tuple(sorted(order[:n_val]))
    train = tuple(sorted(v for v in ids if v not in val))
    return Fold(index=-1, train=train, val=val, test=())
