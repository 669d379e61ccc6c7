"""Label new videos with a trained run's final model (``mouse-pipeline predict``).

For every video: extract embeddings with the run's backbone and settings (reusing the
run's cache when up to date), apply the final model(s) trained with ``train --final``,
post-process with the thresholds and bout parameters chosen on validation videos, and
write into the output folder:

``<stem>_predictions.csv``
    ``frame, time_s``, then ``p_<behaviour>`` probabilities, then ``<behaviour>`` 0/1
    after post-processing.
``<stem>_bouts.csv``
    ``behavior, start_frame, end_frame, start_s, end_s, duration_s`` (end frame
    inclusive; ``end_s`` is the end of the last frame), one row per bout of the 0/1 columns.
``<stem>_ethogram.png``
    The bouts over time.
``summary.csv``
    Per video and behaviour: bout count, total seconds, percent of time, latency to the
    first bout and mean bout seconds.

Every file is written beside its final name and renamed into place.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from .config import Config
from .dataset import find_videos, open_features
from .errors import InputError, RunError
from .features.store import cache_path, read_attrs, sanitize_id
from .fileio import atomic_open
from .metrics import bouts_from_binary
from .plots import ethogram_figure, save_png
from .postprocess import apply as apply_postprocess
from .runs import FinalModel, RunFolder
from .scoring import write_rows_csv

log = logging.getLogger(__name__)

BOUT_COLUMNS = ["behavior", "start_frame", "end_frame", "start_s", "end_s", "duration_s"]


def choose_final(run: RunFolder, cfg: Config, model_name: str | None) -> FinalModel:
    """The final model named ``backbone/model``, or the best by cross-validated PR-AUC.

    Without a name, a run of one model uses it; a run of several uses the one with the
    best mean pooled PR-AUC in the report's ``metrics.json`` (RunError before a report).
    """
    combos = [(b, m) for b in cfg.extract.backbones for m in cfg.train.models]
    names = ", ".join(f"{b}/{m}" for b, m in combos)
    if model_name:
        backbone, _, kind = model_name.partition("/")
        if (backbone, kind) not in combos:
            raise RunError(f"--model {model_name!r}: not trained in {run.path}; choose one of {names}")
    elif len(combos) == 1:
        backbone, kind = combos[0]
    else:
        scores = run.model_scores()
        scored = {c: scores[f"{c[0]}/{c[1]}"] for c in combos
                  if not math.isnan(scores.get(f"{c[0]}/{c[1]}", math.nan))}
        if not scored:
            raise RunError(f"{run.path}: several models ({names}); run `mouse-pipeline report --run "
                           f"{run.path}` first so the best can be chosen, or pass --model backbone/model")
        backbone, kind = max(scored, key=lambda c: scored[c])
        log.info("using %s/%s, the best by cross-validated PR-AUC (%.3f)", backbone, kind, scored[(backbone, kind)])
    return run.read_final(cfg, backbone, kind)


def final_probabilities(final: FinalModel, frames) -> np.ndarray:
    """Per-frame probabilities (n_frames, n_behaviours) of the final model(s).

    ``frames`` is the video's features: an array, or its cache file read window by window.
    """
    from .sequences.inference import predict_heads
    from .sequences.models import load_model

    heads = [(outputs, load_model(path)) for outputs, path in final.heads]
    return predict_heads(heads, frames, final.window, final.inference_stride, len(final.behaviors))


def bouts_table(binary: np.ndarray, behaviors: tuple[str, ...], fps: float) -> list[dict]:
    """One row per bout of each behaviour's 0/1 column (end frame inclusive)."""
    rows = []
    for j, b in enumerate(behaviors):
        for s, e in bouts_from_binary(binary[:, j]):
            rows.append({"behavior": b, "start_frame": s, "end_frame": e,
                         "start_s": round(s / fps, 4), "end_s": round((e + 1) / fps, 4),
                         "duration_s": round((e - s + 1) / fps, 4)})
    return rows


def summary_rows(video: str, binary: np.ndarray, behaviors: tuple[str, ...], fps: float) -> list[dict]:
    """Per behaviour: bout count, total seconds, percent of time, latency, mean bout seconds."""
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
                          behaviors: tuple[str, ...], fps: float) -> None:
    """``frame, time_s, p_<b>..., <b>...`` (written beside, then renamed)."""
    with atomic_open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["frame", "time_s", *(f"p_{b}" for b in behaviors), *behaviors])
        for i in range(probs.shape[0]):
            w.writerow([i, f"{i / fps:.4f}", *(f"{p:.5f}" for p in probs[i]), *binary[i].tolist()])


def _resolve_videos(videos: list[Path]) -> list[Path]:
    paths: list[Path] = []
    for v in videos:
        paths.extend(find_videos(v))
    stems: dict[str, Path] = {}
    for p in paths:
        vid = sanitize_id(p.stem)
        if vid in stems and stems[vid] != p:
            raise InputError(f"{p}: same name as {stems[vid]}; outputs would collide, rename one")
        stems[vid] = p
    return list(stems.values())


def predict_videos(run_dir: str | Path, videos: list[Path], out: str | Path,
                   model_name: str | None = None, progress: bool = True,
                   pose_dir: str | Path | None = None) -> list[Path]:
    """Predict every video and write the per-video files and ``summary.csv``; return their CSVs.

    ``pose_dir`` is the folder of DeepLabCut files for these videos when the run crops
    around a body part (default: the run's ``data.crop.pose``).
    """
    from .devices import describe
    from .features.extract import extract

    run, out = RunFolder(run_dir), Path(out)
    cfg = run.read_config()
    if pose_dir is not None:
        cfg = cfg.replace(**{"data.crop.pose": str(pose_dir)})
    final = choose_final(run, cfg, model_name)
    paths = _resolve_videos(videos)
    log.info("predict runs %s", describe())
    out.mkdir(parents=True, exist_ok=True)
    written, summary = [], []
    for path in paths:
        vcfg = cfg.replace(**{"data.videos": str(path), "data.labels": None,
                              "extract.backbones": [final.backbone]})
        extract(vcfg, progress=progress)
        vid = sanitize_id(path.stem)
        cfile = cache_path(cfg.extract.cache, final.backbone, vid)
        features = open_features(cfile, final.backbone)
        fps = float(cfg.data.fps or read_attrs(cfile)["fps"])
        try:
            probs = final_probabilities(final, features)
        finally:
            features.close()
        binary = apply_postprocess(probs, final.thresholds, final.max_gap, final.min_len)
        target = out / f"{vid}_predictions.csv"
        write_predictions_csv(target, probs, binary, final.behaviors, fps)
        write_rows_csv(out / f"{vid}_bouts.csv", bouts_table(binary, final.behaviors, fps), BOUT_COLUMNS)
        tracks = [(b, binary[:, j], j) for j, b in enumerate(final.behaviors)]
        save_png(ethogram_figure(tracks, fps, f"{vid}: predicted bouts ({final.backbone}/{final.kind})"),
                 out / f"{vid}_ethogram.png")
        summary.extend(summary_rows(vid, binary, final.behaviors, fps))
        written.append(target)
        log.info("%s: %d frames predicted -> %s", vid, probs.shape[0], target)
    write_rows_csv(out / "summary.csv", summary)
    return written
