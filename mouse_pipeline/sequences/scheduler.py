"""One scheduler for stage 2: every trial of every unfinished fold, inline or in workers.

A *unit* is one (backbone or input set, model, fold); its *trials* are those of
:class:`.tuning.UnitSearch` (the hyperparameter candidates of :func:`.search.unit_trials`;
under ``auto``, those of every kind it searches). The scheduler submits every trial of
every unfinished unit to a runner, in the order a sequential run takes them (with
``train.search.algorithm: tpe`` or ``early_stop: asha``, the first trial of each of a
unit's chains, one per kind, and a chain's next trial once its previous one has scored),
and as results come in keeps each unit's best trial (ties to the earlier trial; never
one ASHA pruned) and, once a unit's last trial is in, writes its fold folder
(:func:`.fold_output.write_unit`: thresholds and post-processing chosen on the fold's
validation probabilities, then the test videos predicted once). Finished units are
skipped, so a killed run resumes; within an unfinished unit, the trials already scored
are replayed from its trial log (:mod:`mouse_pipeline.runs.trials`) instead of being
fitted again, and the kept trial is fitted once more if it was one of them.
Under ``inner_folds`` (and ``blocks`` with a refit) the trials only validate: once a
unit's trials are in, one more task refits its best trial on every training video, and
that refit is the fold's model (``k`` fits per trial and head, plus one refit per head).

Runners: :class:`InlineRunner` fits trials in this process one after another, when the
scheduler asks for the next result (``train.workers: 1``); :class:`PoolRunner` fits them
in ``train.workers`` spawned processes (:mod:`.workers`); with ``cluster.ray.enabled``
(``--ray``), ``mouse_pipeline.cluster.train_ray.RayRunner`` fits them as Ray tasks. All give the same results bit
for bit: seeds depend only on (seed, fold, trial, head), and the intra-op thread count is
TensorFlow's default in every process (oneDNN splits its sums by it). A runner with
``outputs_in_workers`` (Ray's) also gets each unit's ``output`` task: the kept heads,
packed, predicting the fold's videos in a worker, so that this module, in the driver,
imports no TensorFlow (it is imported only where a task runs: :func:`run_task`).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..config import MODEL_KINDS, Config
from ..dataset import VideoData, load_dataset, load_into_memory
from ..devices import gpu_memory_growth
from ..errors import RunError
from ..folds import Fold
from ..runs import RunFolder
from .asha import Rungs
from .fold_output import FoldProbabilities, fold_probabilities, write_unit
from .progress import UnitProgress, trial_records
from .results import FitResult, PackedHead, TrialResult, format_seconds
from .search import Trial
from .tuning import UnitSearch
from .workers import WorkerPool, cpu_count

log = logging.getLogger(__name__)

#: The key of a unit's refit task, in place of a trial number.
REFIT = "refit"
#: The key of a kept trial fitted again: a resumed run replayed it, and its models were lost.
AGAIN = "again"
#: The key of a unit's output task (``--ray``): its kept heads predict the fold's videos in a worker.
OUTPUT = "output"


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
    """One trial of a unit to fit, or (``refit_epochs`` set) the refit of its best trial, or
    (``output`` set: its kept heads, packed) the fold's probabilities to make, the validation
    videos' too with ``output_val``; ``rungs``: what ASHA compares the trial with
    (:mod:`.asha`), None without it."""

    unit: Unit
    trial: Trial
    n_trials: int
    refit_epochs: tuple[int, ...] | None = None
    rungs: Rungs | None = None
    output: tuple[PackedHead, ...] | None = None
    output_val: bool = False


def run_task(cfg: Config, by_id: dict[str, VideoData], task: Task,
             progress: bool) -> TrialResult | list[FitResult] | FoldProbabilities:
    """A trial's result, a refit's heads, or a unit's fold probabilities (its output task)."""
    from .choice import inner_video_choice
    from .fit import fit_trial, refit_trial  # TensorFlow: only where a model is fitted

    u = task.unit
    if task.output is not None:
        heads = [h.unpack() for h in task.output]
        return fold_probabilities(cfg, u.fold, heads, task.trial, by_id, task.output_val)
    if task.refit_epochs is None:
        result = fit_trial(cfg, task.trial, task.n_trials, by_id, u.fold, u.label, progress, task.rungs)
        if u.kind == "auto" and cfg.train.auto.select == "inner_videos" and not result.pruned:
            result = inner_video_choice(cfg, task.trial, task.n_trials, by_id, u.fold, result, u.label, progress)
        return result
    return refit_trial(cfg, task.trial, task.n_trials, by_id, u.fold, list(task.refit_epochs), u.label, progress)


def unit_label(backbone: str, kind: str, fold: Fold, n_folds: int) -> str:
    return f"[{backbone}/{kind}] " + ("final" if fold.index < 0 else f"fold {fold.index + 1}/{n_folds}")


class VideoStore:
    """The videos of one backbone (input set) at a time, in memory when they fit ``train.memory_gb``.

    A set of several streams is each video's streams side by side (:func:`.dataset.load_dataset`):
    read per window from every stream's file, or concatenated once in memory."""

    def __init__(self, cfg: Config, in_memory: bool = True) -> None:
        self.cfg, self.in_memory = cfg, in_memory
        self.backbone: str | None = None
        self.by_id: dict[str, VideoData] = {}

    def get(self, backbone: str) -> dict[str, VideoData]:
        if backbone != self.backbone:
            self.close()
            videos = load_dataset(self.cfg, backbone)
            if self.in_memory:
                videos = load_into_memory(videos, self.cfg.train.memory_gb)
            self.backbone, self.by_id = backbone, {v.video_id: v for v in videos}
        return self.by_id

    def close(self) -> None:
        for v in self.by_id.values():
            if hasattr(v.features, "close"):
                v.features.close()
        self.backbone, self.by_id = None, {}


# --------------------------------------------------------------------------- runners


class InlineRunner:
    """Tasks fitted in this process, in submission order (a task submitted while results
    flow first), as results are asked for."""

    def __init__(self, cfg: Config, videos: VideoStore, progress: bool) -> None:
        self.cfg, self.videos, self.progress = cfg, videos, progress
        self.queue: list[tuple[Any, Task]] = []
        self.running = False

    def __enter__(self) -> InlineRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.queue.clear()

    def submit(self, key: Any, task: Task) -> None:
        # a task submitted once results flow (a refit, an adaptive search's next trial)
        # continues its unit: it goes first, so units finish one after another
        self.queue.insert(0, (key, task)) if self.running else self.queue.append((key, task))

    def results(self) -> Iterator[tuple[Any, Any]]:
        self.running = True
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


def _task_in_worker(cfg: Config, task: Task, progress: bool) -> TrialResult | list[PackedHead] | FoldProbabilities:
    """Worker task: fit one trial (or refit) of one unit, its result with the heads packed;
    or a unit's output task, its fold probabilities."""
    out = run_task(cfg, _WorkerState.store(cfg).get(task.unit.backbone), task, progress)
    if isinstance(out, FoldProbabilities):
        return out
    return out.pack() if isinstance(out, TrialResult) else [PackedHead.pack(h) for h in out]


def _configure_worker(inter_op_threads: int) -> None:
    """TensorFlow set-up of a worker process (run once, before its first trial).

    Only the inter-op pool is shrunk; the intra-op pool keeps TensorFlow's default size,
    the one a sequential run uses, so that ``train.workers`` does not change results.
    """
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    tf.config.experimental.enable_op_determinism()
    gpu_memory_growth()


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


def _runner(cfg: Config, n_tasks: int, at_once: int, n_units: int, videos: VideoStore, progress: bool) -> Any:
    """The runner of a run: Ray tasks (``--ray``), worker processes, or this process."""
    if cfg.cluster.ray.enabled:  # every trial a Ray task (mouse_pipeline.cluster.train_ray)
        from ..cluster.train_ray import RayRunner

        return RayRunner(cfg, progress)
    n_proc = min(cfg.train.workers, at_once)
    if n_proc > 1:
        log.info("training %d trial(s) of %d fold(s) in %d worker processes", n_tasks, n_units, n_proc)
        return PoolRunner(cfg, n_proc, progress)
    return InlineRunner(cfg, videos, progress)


def _unfinished(cfg: Config, run: RunFolder, jobs: list[tuple[str, str, Fold]], n_folds: int) -> list[Unit]:
    """The units of ``jobs`` whose fold folder is not complete (a resumed run skips the others)."""
    units = []
    for b, m, fold in jobs:
        unit = Unit(b, m, fold, unit_label(b, m, fold, n_folds))
        if run.is_complete(run.unit(b, m, fold.index)):
            log.info("%s: already complete, skipped", unit.label)
            run.trial_log(cfg, b, m, fold.index).remove()  # left by a kill just after the fold was written
        else:
            units.append(unit)
    return units


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists)."""
    return json.loads(json.dumps(value, default=float))


def _replayed(entry: dict[str, Any]) -> TrialResult:
    """A logged trial's result, without its models (:mod:`mouse_pipeline.runs.trials`)."""
    rungs = {key: {int(r): float(v) for r, v in values.items()} for key, values in entry["rungs"].items()}
    choice = entry.get("choice_score")
    return TrialResult([], float(entry["score"]), record=entry["record"], rungs=rungs, pruned=bool(entry["pruned"]),
                       choice_score=None if choice is None else float(choice),
                       choice_record=entry.get("choice_record") or {})


class _Schedule:
    """One :func:`schedule` call: its units, their searches, trial logs and progress.

    Every scored trial is logged (:mod:`mouse_pipeline.runs.trials`); a resumed run replays
    a unit's logged trials in the order its search proposes them (after checking that it
    proposes the same ones) and fits only the others, and fits its kept trial again
    (``AGAIN``) when that was a replayed one, for its models.
    """

    def __init__(self, cfg: Config, run: RunFolder, units: list[Unit], progress: bool) -> None:
        self.cfg, self.run, self.units = cfg, run, units
        self.searches = [UnitSearch(cfg, u.kind, u.fold.index, MODEL_KINDS) for u in units]
        self.logs = [run.trial_log(cfg, u.backbone, u.kind, u.fold.index) for u in units]
        self.logged = [trial_log.read() for trial_log in self.logs]
        self.entries: list[dict[int, dict[str, Any]]] = [{} for _ in units]
        self.state = [UnitProgress(prefer=cfg.train.auto.prefer if u.kind == "auto" else "best") for u in units]
        self.kept: dict[int, tuple[int, TrialResult | None]] = {}  # refits and fits again
        self.replay: list[tuple[int, int, TrialResult]] = []
        self.videos = VideoStore(cfg, in_memory=not cfg.cluster.ray.enabled)  # Ray's driver reads labels only
        self.runner = _runner(cfg, sum(s.n for s in self.searches), sum(s.width for s in self.searches),
                              len(units), self.videos, progress)
        # a runner whose workers also predict the fold's videos (Ray): no model in this process
        self.in_workers = bool(getattr(self.runner, "outputs_in_workers", False))
        self.t_start, self.done = time.perf_counter(), 0

    def submit(self, i: int, trials: list[Trial]) -> None:
        """Each trial to its runner, or (logged) to the replay queue."""
        for trial in trials:
            entry = self.logged[i].get(trial.index)
            if entry is None:
                task = Task(self.units[i], trial, self.searches[i].n, rungs=self.searches[i].rungs(trial))
                self.runner.submit((i, trial.index), task)
                continue
            if (entry["kind"], entry["params"]) != (trial.kind, _plain(trial.params)):
                raise RunError(f"{self.logs[i].path}: trial {trial.index + 1} was {trial.kind} {entry['params']}, "
                               f"this run proposes {trial.params}; delete the file, and that fold's trials "
                               "are fitted again")
            self.entries[i][trial.index] = entry
            self.replay.append((i, trial.index, _replayed(entry)))

    def drain(self) -> None:
        while self.replay:
            self.on_trial(*self.replay.pop(0))

    def on_result(self, i: int, t: Any, result: Any) -> None:
        if t == REFIT:  # the kept trial's heads, refitted on every training video
            bt, best = self.kept.pop(i)
            self.finish(i, replace(best, heads=list(result)), bt)
        elif t == OUTPUT:  # the kept heads' fold probabilities, made in a worker
            bt, best = self.kept.pop(i)
            self.write(i, best, bt, result)
        elif t == AGAIN:  # a replayed kept trial, fitted again for its models
            bt, _ = self.kept.pop(i)
            if result.pruned:
                raise RunError(f"{self.logs[i].path}: trial {bt + 1}, fitted again, was pruned this time, "
                               "unlike in its log (another machine?); delete the file and train again")
            if result.score != self.state[i].scores[bt]:
                log.warning("%s: trial %d fitted again scored %r, its log says %r (another machine?)",
                            self.units[i].label, bt + 1, result.score, self.state[i].scores[bt])
            self.keep(i, bt, result)
        else:
            self.on_trial(i, t, result)
        self.drain()

    def on_trial(self, i: int, t: int, result: TrialResult) -> None:
        unit, search, state = self.units[i], self.searches[i], self.state[i]
        trial = search.trials[t]
        replayed = t in self.entries[i]
        what = (f"{trial.kind} " if unit.kind == "auto" else "") + str(trial.params or "(defaults)")
        pruned_at = result.record["pruned"]["epoch"] if result.pruned else 0
        log.info("%s trial %d/%d %s: validation PR-AUC %.3f%s%s%s", unit.label, t + 1, search.n, what, result.score,
                 "" if result.choice_score is None else
                 f", held-out training videos PR-AUC {result.choice_score:.3f}",
                 f" (pruned by ASHA at epoch {pruned_at})" if pruned_at else "",
                 " (replayed from its trial log)" if replayed else "")
        if not replayed:
            self.entries[i][t] = _plain({"trial": t, "kind": trial.kind, "params": trial.params, "score": result.score,
                                         "record": result.record, "rungs": result.rungs, "pruned": result.pruned,
                                         "choice_score": result.choice_score, "choice_record": result.choice_record})
            self.logs[i].write([self.entries[i][k] for k in sorted(self.entries[i])])
        self.submit(i, search.done(t, result.score, result.rungs, pruned_at))  # a chain's next trial
        state.add(t, result)
        if len(state.scores) < search.n:
            return
        if state.best is None:  # cannot happen: ASHA never prunes a chain's first trial
            raise RunError(f"{unit.label}: every trial was pruned; none can be the fold's model")
        bt, best = state.take()
        if bt not in self.logged[i]:  # fitted by this run: its models are here
            self.keep(i, bt, best)
            return
        log.info("%s: trial %d/%d kept, from the trial log: fitted again for its models", unit.label, bt + 1, search.n)
        self.kept[i] = (bt, None)
        self.runner.submit((i, AGAIN), Task(unit, search.trials[bt], search.n, rungs=search.rungs(search.trials[bt])))

    def keep(self, i: int, bt: int, best: TrialResult) -> None:
        """The kept trial becomes the fold: at once, or after its refit."""
        unit, n = self.units[i], self.searches[i].n
        if best.refit_epochs is None:
            self.finish(i, best, bt)
            return
        log.info("%s: trial %d/%d kept; refit on every training video for %s epoch(s)",
                 unit.label, bt + 1, n, "/".join(map(str, best.refit_epochs)))
        self.kept[i] = (bt, best)
        self.runner.submit((i, REFIT), Task(unit, self.searches[i].trials[bt], n, tuple(best.refit_epochs)))

    def finish(self, i: int, best: TrialResult, bt: int) -> None:
        """The fold of the kept trial's heads: written at once, or (Ray) after a worker's output task."""
        if not self.in_workers:
            self.write(i, best.unpack(), bt, None)
            return
        unit, search = self.units[i], self.searches[i]
        self.kept[i] = (bt, best)
        self.runner.submit((i, OUTPUT), Task(unit, search.trials[bt], search.n, output=tuple(best.heads),
                                             output_val=best.val_probs is None))

    def write(self, i: int, best: TrialResult, bt: int, probs: FoldProbabilities | None) -> None:
        unit, search = self.units[i], self.searches[i]
        write_unit(self.cfg, self.run, unit, best, search.trials[bt], trial_records(unit, search, self.state[i]),
                   self.videos.get(unit.backbone),
                   {**search.record(), **({"prefer": self.state[i].rule} if self.state[i].rule else {})}, probs)
        self.logs[i].remove()
        self.done += 1
        log.info("%s done (%d/%d); run ETA %s", unit.label, self.done, len(self.units),
                 format_seconds((time.perf_counter() - self.t_start) / self.done * (len(self.units) - self.done)))


def schedule(cfg: Config, run: RunFolder, jobs: list[tuple[str, str, Fold]], n_folds: int,
             progress: bool) -> None:
    """Train every unfinished unit of ``jobs`` and write its fold folder."""
    units = _unfinished(cfg, run, jobs, n_folds)
    if not units:
        return
    s = _Schedule(cfg, run, units, progress)
    try:
        with s.runner:
            for i in range(len(units)):
                s.submit(i, s.searches[i].start())
            s.drain()
            for (i, t), result in s.runner.results():
                s.on_result(i, t, result)
    finally:
        s.videos.close()
