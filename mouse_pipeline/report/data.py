"""A run folder read back: every fold's probabilities, labels, settings and timings;
the ensemble of a run's complete models."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..annotations import Labels, check_length, read_labels
from ..config import Config
from ..dataset import label_file
from ..ensemble import select_weights
from ..errors import CacheError, RunError
from ..features.store import cache_path, read_attrs
from ..folds import Fold
from ..postprocess import choose_postprocess_per_behavior
from ..predictor import ENSEMBLE, ensemble_members
from ..runs import FoldResult, RunFolder
from ..streams import all_streams, input_sets

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """Everything the report needs, read from a run folder and its label files."""

    run: Path
    cfg: Config
    folds: list[Fold]
    behaviors: tuple[str, ...]
    models: dict[str, list[FoldResult]]
    incomplete: dict[str, int]
    labels: dict[str, Labels]
    fps: dict[str, float]
    ensemble_members: list[str] = field(default_factory=list)
    ensemble_note: str = ""


def load_run(run_dir: str | Path) -> RunData:
    """Read folds, the complete models' fold results, labels and frame rates of a run.

    Raises
    ------
    RunError
        No config, no ``folds.json``, no finished model, a damaged fold file, or records
        that disagree with ``folds.json``; the message names the file.
    """
    run = RunFolder(run_dir)
    cfg = run.read_config()
    folds = run.read_folds()
    behaviors = tuple(cfg.data.behaviors)
    wanted = {f.index for f in folds}
    order = {f"{b}/{m}": i for i, (b, m) in enumerate(
        (b, m) for b in input_sets(cfg) for m in cfg.train.models)}
    found = run.find_models()
    models: dict[str, list[FoldResult]] = {}
    incomplete: dict[str, int] = {}
    for name in sorted(found, key=lambda n: (order.get(n, len(order)), n)):
        extra = sorted(set(found[name]) - wanted)
        if extra:
            log.warning("%s: fold folder(s) %s are not in folds.json; ignored", name, extra)
        done = sorted(set(found[name]) & wanted)
        if len(done) < len(folds):
            incomplete[name] = len(done)
            log.warning("%s: only %d of %d folds finished; left out of the report "
                        "(`mouse-pipeline train` resumes it)", name, len(done), len(folds))
            continue
        models[name] = [run.read_fold(name, f, behaviors) for f in folds]
    if not models:
        raise RunError(f"{run.path}: no model has out-of-fold probabilities for all {len(folds)} folds; "
                       "run `mouse-pipeline train` first (it resumes unfinished folds)")
    recorded = run.recorded_videos()
    lengths: dict[str, int] = {}
    for name, results in models.items():
        for fr in results:
            blocks = {v: (a, b) for v, a, b in fr.fold.blocks}  # a block's probabilities: its frames only
            whole = {**{v: p for v, p in fr.val.items() if v not in blocks}, **fr.test}
            for vid, p in whole.items():
                if lengths.setdefault(vid, len(p)) != len(p):
                    raise RunError(f"{run.path / name}: {len(p)} frames of probabilities for {vid!r}, "
                                   f"but {lengths[vid]} in another model; retrain with one cache")
            for vid, p in fr.val.items():
                if vid in blocks:
                    n = recorded.get(vid, {}).get("n_frames")
                    if len(p) != blocks[vid][1] - blocks[vid][0] or not isinstance(n, int):
                        raise RunError(f"{run.path / name}: validation block of {vid!r} does not match "
                                       "its record; train the run again")
                    lengths.setdefault(vid, n)
    backbones = all_streams([n.split("/")[0] for n in models])
    fps = {vid: float(recorded[vid]["fps"]) if vid in recorded else _video_fps(cfg, backbones, vid)
           for vid in lengths}
    labels = {vid: _video_labels(cfg, vid, n, fps[vid], recorded.get(vid, {}).get("labels"))
              for vid, n in lengths.items()}
    return RunData(run.path, cfg, folds, behaviors, models, incomplete, labels, fps)


def _video_fps(cfg: Config, backbones: Sequence[str], vid: str) -> float:
    """``data.fps``, else the cache's record, else 30 (with a warning)."""
    if cfg.data.fps:
        return float(cfg.data.fps)
    for b in backbones:
        path = cache_path(cfg.extract.cache, b, vid)
        if not path.is_file():
            continue
        try:
            fps = read_attrs(path).get("fps")
        except CacheError as err:
            log.warning("%s", err)
            continue
        if fps and float(fps) > 0:
            return float(fps)
    log.warning("%s: frame rate unknown (data.fps unset, no fps in the cache); assuming 30 "
                "frames/s for bout durations and time axes", vid)
    return 30.0


def _video_labels(cfg: Config, vid: str, n_frames: int, fps: float, recorded: str | None) -> Labels:
    """The labels the run was trained with: the file training recorded, else found by id."""
    if cfg.data.labels is None:
        raise RunError(f"{cfg.source}: data.labels is not set, so the report has nothing to score "
                       "against; set it to the labels folder the run was trained with")
    path = Path(recorded) if recorded and Path(recorded).is_file() else label_file(cfg, vid)
    if path is None:
        raise RunError(f"{cfg.data.labels}: no label file for video {vid!r} (expected {vid}.csv); "
                       "the report scores against the labels the run was trained with")
    labels = read_labels(path, cfg.data.label_format, cfg.data.behaviors,
                         columns=dict(cfg.data.label_columns) or None, fps=fps, n_frames=n_frames)
    return check_length(labels, n_frames, cfg.data.max_frame_mismatch, vid)


def add_ensemble(data: RunData) -> None:
    """Add the ``ensemble`` model when two or more models other than ``auto`` are complete
    (:func:`~mouse_pipeline.predictor.ensemble_members`).

    Per fold and behaviour, test and validation probabilities are the weighted mean of the
    complete models' that :func:`~mouse_pipeline.ensemble.select_weights` chose on the fold's
    validation probabilities; threshold, ``max_gap`` and ``min_len`` of each behaviour are
    then chosen on the same validation frames with
    :func:`~mouse_pipeline.postprocess.choose_postprocess` and the config's ``postprocess``
    grids. Test probabilities play no part in any choice. The weights are kept in each
    fold result's ``meta["weights"]`` (behaviour -> member -> weight), with the number of
    positive annotated validation frames they were chosen on in ``meta["validation_positives"]``.
    """
    names = ensemble_members(list(data.models))
    if len(names) < 2:
        data.ensemble_note = "not built: it needs at least two complete models other than auto"
        return
    grids = (list(data.cfg.postprocess.max_gap), list(data.cfg.postprocess.min_len))
    results = []
    for i, fold in enumerate(data.folds):
        parts = [data.models[n][i] for n in names]
        segments = fold.val_segments  # validation videos, inner out-of-fold predictions or blocks
        if not segments or any(v not in p.val for p in parts for v, _, _ in segments):
            data.ensemble_note = f"not built: fold {fold.index} has no validation probabilities"
            log.warning("ensemble %s", data.ensemble_note)
            return
        val_labels = [data.labels[v].matrix[a:b] for v, a, b in segments]
        pick = select_weights(val_labels, [[p.val[v] for v, _, _ in segments] for p in parts])
        test = {v: pick.mean([p.test[v] for p in parts]) for v in fold.test}
        val = {v: pick.mean([p.val[v] for p in parts]) for v, _, _ in segments}
        post = choose_postprocess_per_behavior(data.behaviors, val_labels, [val[v] for v, _, _ in segments], *grids)
        windows = {(p.meta.get("window"), p.meta.get("inference_stride")) for p in parts}
        meta = dict(zip(("window", "inference_stride"), windows.pop(), strict=True)) if len(windows) == 1 else {}
        meta["weights"] = {b: dict(zip(names, w, strict=True)) for b, w in zip(data.behaviors, pick.weights, strict=True)}
        # how much the weights rest on: a few bouts' frames choose them as surely as many
        meta["validation_positives"] = {b: sum(int((t[:, j] == 1).sum()) for t in val_labels)
                                        for j, b in enumerate(data.behaviors)}
        results.append(FoldResult(fold, test, val, post, meta=meta))
    data.models[ENSEMBLE] = results
    data.ensemble_members = names
    data.ensemble_note = ("per behaviour and fold, a weighted mean of the probabilities of " + ", ".join(names)
                          + ", the weights chosen on validation (greedy forward selection)")
