"""``make bench-quality``'s stream comparison: RGB, RGB + motion, pose, and all three.

A frozen ImageNet CNN sees one frame at a time. On a regime where a behaviour has no
static cue (``no_cue``: grooming is only rhythmic movement of the forepaws), what the
motion stream (``<backbone>+motion``) and the pose stream (``pose``) add shows in the
out-of-fold PR-AUC of the same models trained on each input set (:data:`SETS`), beside
a per-frame logistic regression on the same input set. Everything else is the regime's:
its videos, labels, folds, validation mode and the demo's training settings for random
features (:func:`mouse_pipeline.bench_quality.regime_config`), with one addition: every
stream is projected to :data:`PROJECTION` units before the head (``train.fusion.projection``;
the RGB-alone set too, so the sets differ only in what they see).

The input sets are trained in one run (``train.inputs``), so their folds are the same
and their models differ only in what they see.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import bench_quality as bq
from .streams import display_name, set_name

log = logging.getLogger(__name__)

RGB = "resnet50v2"
MOTION = f"{RGB}+motion"
#: The compared input sets: a short label and the streams each model of it sees.
SETS = {
    "rgb": (RGB,),
    "rgb+motion": (RGB, MOTION),
    "pose": ("pose",),
    "all three": (RGB, MOTION, "pose"),
}
#: The models trained on every input set (``train.models``' default).
MODELS = ("lstm", "tcn")
#: ``train.fusion.projection`` of every input set: each stream to 32 units before the head.
#: Chosen on a development seed (101, not the bench's): grooming PR-AUC of the LSTM on
#: RGB + motion 0.564 without a projection, 0.561 with input dropout 0.3, 0.826 with it
#: (docs/BENCHMARKS.md).
PROJECTION = 32


def streams_config(regime: bq.Regime, work: Path, labels: Path, run: Path, models: list[str], mode: str):
    """The regime's config with every stream extracted and every input set trained."""
    data = work / regime.dataset / "data"
    return bq.regime_config(regime, work, labels, run, models, {
        "extract.backbones": [RGB, MOTION, "pose"],
        "extract.pose_features.pose": str(data / "pose"),
        "train.inputs": [list(s) for s in SETS.values()],
        "train.fusion.projection": PROJECTION,
        "train.validation": mode})


def score_sets(run_dir: Path, data: Path) -> dict[str, dict[str, list[float]]]:
    """Pooled out-of-fold PR-AUC per behaviour: ``{set label: {model: scores}}``."""
    from .runs import RunFolder

    run = RunFolder(run_dir)
    folds = run.read_folds()
    label_of = {set_name(s): label for label, s in SETS.items()}
    out: dict[str, dict[str, list[float]]] = {label: {} for label in SETS}
    for name in sorted(run.find_models()):
        input_set, model = name.split("/", 1)
        ys, ps = bq.fold_predictions(run, folds, name, data)
        out[label_of[input_set]][model] = bq.pooled_pr_auc([y for f in ys for y in f], [p for f in ps for p in f])
    return out


def run_streams(regime: bq.Regime, work: Path, models: list[str], mode: str,
                seed: int = bq.SEED) -> dict[str, Any]:
    """Extract RGB, motion and pose streams of one regime's videos, train every input set."""
    from .features.extract import extract
    from .sequences.training import train

    data = bq.prepare_dataset(regime.dataset, work, seed)
    labels = bq.training_labels(regime, data, work, seed)
    run_dir = work / "runs" / f"{regime.name}-streams-{mode}"
    cfg = streams_config(regime, work, labels, run_dir, models, mode)
    t0 = time.perf_counter()
    extract(cfg, progress=False)
    t_extract = time.perf_counter() - t0
    train(cfg, progress=False, overwrite=True)
    scores = score_sets(run_dir, data)
    for label, streams in SETS.items():
        scores[label]["logistic"] = bq.logistic_baseline(cfg, run_dir, data, set_name(streams))[0]
    log.info("%s streams: %s", regime.name,
             {k: {m: round(float(np.mean(s)), 3) for m, s in v.items()} for k, v in scores.items()})
    return {"regime": regime.name, "what": regime.what, "validation": mode, "behaviors": list(bq.BEHAVIORS),
            "prevalence": bq.prevalence(data), "sets": {k: list(v) for k, v in SETS.items()},
            "scores": scores, "extract_seconds": t_extract, "seconds": time.perf_counter() - t0}


def stream_checks(res: dict[str, Any]) -> list[str]:
    """#14's acceptance on one regime: motion's gain on grooming, pose alone against 3x prevalence."""
    scores, prev, behaviors = res["scores"], res["prevalence"], res["behaviors"]
    g = behaviors.index("grooming")
    lines = []
    for model in scores["rgb"]:
        gain = scores["rgb+motion"][model][g] - scores["rgb"][model][g]
        lines.append(f"{model}: grooming rgb {scores['rgb'][model][g]:.3f} -> rgb+motion "
                     f"{scores['rgb+motion'][model][g]:.3f} ({gain:+.3f}; "
                     f"{'at least' if gain >= 0.15 else 'NOT at least'} +0.15)")
        low = [b for j, b in enumerate(behaviors) if scores["pose"][model][j] <= 3 * prev[j]]
        lines.append(f"{model}: pose alone above 3x prevalence for "
                     + ("every behaviour" if not low else f"all but {', '.join(low)}"))
    return lines


def format_streams(res: dict[str, Any]) -> list[str]:
    """Markdown: per behaviour, every (input set, model) PR-AUC, then the checks."""
    cols = [(label, m) for label, v in res["scores"].items() for m in v]
    lines = ["", f"streams on {res['regime']} (validation {res['validation']}; extraction "
             f"{res['extract_seconds'] / 60:.1f} min, total {res['seconds'] / 60:.1f} min): "
             + "; ".join(f"{k} = {display_name(set_name(s))}" for k, s in res["sets"].items()), "",
             "| behaviour | prevalence | " + " | ".join(f"{label} {m}" for label, m in cols) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in cols) + " |"]
    for j, b in enumerate(res["behaviors"]):
        lines.append(f"| {b} | {res['prevalence'][j]:.3f} | "
                     + " | ".join(f"{res['scores'][label][m][j]:.3f}" for label, m in cols) + " |")
    return [*lines, "", *(f"- {c}" for c in stream_checks(res))]
