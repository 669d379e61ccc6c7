"""``make bench-quality``: out-of-fold PR-AUC of every head on synthetic regimes made hard on purpose.

On the demo's synthetic videos the sequence models are near perfect, so those videos no
longer tell good settings from bad. This fixed protocol makes the task hard in the ways
real lab data is hard, and prints, per regime and behaviour, the pooled out-of-fold
PR-AUC of

- every head of the model zoo (``linear``, ``mlp``, ``lstm``, ``tcn``, ``transformer``),
- ``auto``: the head chosen per fold on validation alone (what a lab gets when it does not
  know which head to take), here on the fold's training videos held out in turn
  (``train.auto.select: inner_videos``, :data:`AUTO_SELECT`),
- ``ensemble``: the report's ensemble of the heads (per fold and behaviour, a weighted mean
  whose weights are chosen on the fold's validation probabilities: :mod:`.ensemble`),
- a per-frame logistic regression (scikit-learn, standardised embeddings, balanced class
  weights, fitted on each fold's non-test videos; no choice is made on any video), the
  baseline a temporal model must beat,

beside each behaviour's prevalence, pooled over the folds and as the mean over folds of
each fold's PR-AUC (which does not put different folds' models on one scale). The
acceptance (:mod:`.bench_checks`) is judged for ``auto`` and ``ensemble``. Regimes (:data:`REGIMES`), each 3 videos and
leave-one-video-out:

``few_videos``
    3 videos, nothing else hard. Also trained with every ``train.validation`` mode, to
    show what each costs and gains with so few videos.
``edge_noise``
    the same videos with the training labels' bout edges moved at random by up to 10 % of
    each bout's length (about 10 % of positive frames wrong); scored against the clean labels.
``rare``
    mid rearing made rare: about 2 % of frames.
``no_cue``
    grooming drawn without its most visible static cue (only rhythmic movement), when the
    synthetic generator offers it.
``pretrained``
    the ``few_videos`` videos through ImageNet-pretrained EfficientNet-Lite0
    (``../shared/tools/pretrained_features.py``, run with the Python of its own virtual
    environment: ``PT_PYTHON``), imported with ``cache import``; skipped when that Python
    is not given.

The seeds (:data:`SEED`) are fresh: no setting of ``configs/demo.yaml`` or
``configs/default.yaml`` was chosen on these videos. Random-weight regimes train with the
demo's settings (made for random 2048-d features); the pretrained regime with
``configs/default.yaml``'s (made for pretrained features).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import Labels, read_labels, write_labels_csv
from .bench_checks import checks
from .config import Config, load_config
from .errors import InputError
from .fileio import write_json
from .metrics import binary_metrics

log = logging.getLogger(__name__)

SEED = 2026  # fresh: settings were chosen on other seeds (docs/BENCHMARKS.md)
N_VIDEOS = 3
FPS = 10.0
SIZE = 256  # frame side; crops of 64 px around the midbody are ~1.5 body lengths
CROP = 64
PRETRAINED_NAME = "efficientnet_lite0_imagenet"
BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")
HEADS = ("linear", "mlp", "lstm", "tcn", "transformer")
VALIDATION_MODES = ("videos", "inner_folds", "blocks")
#: How ``auto`` chooses its head here: on the held-out training videos of each fold
#: (:mod:`.sequences.choice`), as a lab with few videos should. Under ``videos`` validation
#: (one training video per fold here) the validation video is already one no fit saw, and
#: the choice is made on it.
AUTO_SELECT = "inner_videos"
#: Which of those trials ``auto`` keeps: the simplest within one standard error of the best
#: (:func:`.sequences.choice.one_standard_error`); with 3 videos the held-out scores of the
#: kinds are often closer than the two held-out videos are to each other.
AUTO_PREFER = "simplest"


@dataclass(frozen=True)
class Dataset:
    """Synthetic videos shared by the regimes that name them."""

    seed_offset: int
    frames: int
    synth: dict[str, Any] = field(default_factory=dict)


DATASETS = {
    "base": Dataset(0, 1500),
    "rare": Dataset(1, 2400, {"targets": {"mid_rear": 0.012}}),  # ~2 %: one bout per video at least
    "no_cue": Dataset(2, 1500, {"grooming_cue": "motion"}),
}


@dataclass(frozen=True)
class Regime:
    """One way of making the task hard: a dataset, its training labels and its features."""

    name: str
    what: str
    dataset: str = "base"
    edge_noise: float = 0.0
    pretrained: bool = False


REGIMES = (
    Regime("few_videos", "3 videos"),
    Regime("edge_noise", "3 videos; training labels' bout edges moved by up to 10 % of the bout",
           edge_noise=0.10),
    Regime("rare", "3 videos; mid rearing on about 2 % of frames", dataset="rare"),
    Regime("no_cue", "3 videos; grooming without its static cue (movement only)", dataset="no_cue"),
    Regime("pretrained", "the few_videos videos; ImageNet-pretrained EfficientNet-Lite0 features",
           pretrained=True),
)


def jitter_edges(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Move each bout's start and end by up to ``fraction`` of its length (uniform, integer).

    Each behaviour column is treated on its own; bouts never merge into their neighbours
    (an edge moves at most halfway into the gap beside it). Returns a new array.
    """
    out = labels.copy()
    n = len(labels)
    for j in range(labels.shape[1]):
        col = labels[:, j] == 1
        edges = np.flatnonzero(np.diff(np.r_[0, col.astype(np.int8), 0]))
        bouts = list(zip(edges[::2], edges[1::2], strict=True))
        new = np.zeros(n, bool)
        for k, (s, e) in enumerate(bouts):
            d = int(round(fraction * (e - s)))
            prev_end = bouts[k - 1][1] if k else 0
            next_start = bouts[k + 1][0] if k + 1 < len(bouts) else n
            lo_s, hi_e = (s + prev_end) // 2 if k else 0, (e + next_start + 1) // 2 if k + 1 < len(bouts) else n
            s2 = int(np.clip(s + rng.integers(-d, d + 1), lo_s, e - 1)) if d else s
            e2 = int(np.clip(e + rng.integers(-d, d + 1), s2 + 1, hi_e)) if d else e
            new[s2:e2] = True
        out[:, j] = np.where(labels[:, j] < 0, labels[:, j], new.astype(labels.dtype))
    return out


# --------------------------------------------------------------------------- data


def prepare_dataset(name: str, work: Path, seed: int = SEED) -> Path:
    """The dataset's videos, pose and clean labels under ``work/<name>/data`` (made once,
    for one ``seed``: a work folder made with another is refused in one line)."""
    from .synthetic import generate_dataset

    spec, data = DATASETS[name], work / name / "data"
    done = data / ".complete"
    if done.is_file():
        text = done.read_text()  # folders made before --seed say no seed: theirs was SEED
        made = text.rsplit("seed ", 1)[1].strip() if "seed " in text else str(SEED)
        if made != str(seed):
            raise InputError(f"{data}: made for seed {made}, not {seed}; give this seed its own --work folder")
    else:
        generate_dataset(data, n_videos=N_VIDEOS, n_frames=spec.frames, size=SIZE, fps=FPS,
                         seed=seed + spec.seed_offset, **spec.synth)
        done.write_text(f"made by mouse-pipeline bench-quality, seed {seed}\n")
    return data


def training_labels(regime: Regime, data: Path, work: Path, seed: int = SEED) -> Path:
    """The label folder training sees: the clean labels, or copies with moved bout edges."""
    if not regime.edge_noise:
        return data / "labels"
    out = work / regime.dataset / f"labels_{regime.name}"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 99)
    for path in sorted((data / "labels").glob("*.csv")):
        clean = read_labels(path, "thesis", BEHAVIORS)
        write_labels_csv(out / path.name, Labels(BEHAVIORS, jitter_edges(clean.matrix, regime.edge_noise, rng)))
    return out


def label_noise(regime: Regime, data: Path, labels: Path) -> float:
    """Fraction of clean positive frames whose training label differs."""
    wrong = pos = 0
    for path in sorted((data / "labels").glob("*.csv")):
        clean = read_labels(path, "thesis", BEHAVIORS).matrix
        seen = read_labels(labels / path.name, "thesis", BEHAVIORS).matrix
        wrong += int(((clean == 1) != (seen == 1)).sum())
        pos += int((clean == 1).sum())
    return wrong / max(pos, 1)


def regime_config(regime: Regime, work: Path, labels: Path, run: Path, models: list[str],
                  extra: dict[str, Any] | None = None) -> Config:
    """One training run's config: the demo's settings on random features, the defaults on
    pretrained ones (see the module docstring); paths into the bench's work folder."""
    data = work / regime.dataset / "data"
    base = None if regime.pretrained else Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
    backbone = PRETRAINED_NAME if regime.pretrained else "resnet50v2"
    values: dict[str, Any] = {
        "data.videos": str(data / "videos"), "data.labels": str(labels), "data.label_format": "thesis",
        "data.behaviors": list(BEHAVIORS), "data.crop.mode": "pose", "data.crop.pose": str(data / "pose"),
        "data.crop.bodypart": "midbody", "data.crop.size": CROP,
        "extract.cache": str(work / regime.dataset / "cache"), "extract.backbones": [backbone],
        "extract.weights": "random", "extract.input_size": 64, "extract.precision": "float32",
        "train.run": str(run), "train.models": models, "train.folds.scheme": "leave_one_video_out",
        **(extra or {})}
    return load_config(base, [f"{k}={json.dumps(v)}" for k, v in values.items()])


# --------------------------------------------------------------------------- features


def random_features(cfg: Config) -> None:
    """Random-weight ResNet50V2 embeddings of the regime's videos (fresh files are kept)."""
    from .features.extract import extract

    extract(cfg, progress=False)


#: The development tool that makes the ``pretrained`` regime's features (``../shared`` beside the checkout).
TOOL = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "pretrained_features.py"
#: Where, in the work folder, the tool writes the regime's features (``.complete`` once all are there).
PRETRAINED_NPY = Path("base", "pretrained_npy")


def check_pretrained(regimes: list[str], work: Path, pt_python: str | None) -> None:
    """Refuse, in one line and before any regime runs, a ``pretrained`` regime whose features
    are still to be made when the development tool is not there (it would otherwise stop the
    bench after the regimes before it)."""
    done = (work / PRETRAINED_NPY / ".complete").is_file()
    if "pretrained" in regimes and pt_python and not done and not TOOL.is_file():
        raise InputError(f"{TOOL}: the pretrained-features tool is not there (the bench looks for "
                         "../shared/tools beside the checkout); put the shared folder there, or leave "
                         "--regime pretrained out")


def pretrained_features(cfg: Config, data: Path, work: Path, pt_python: str) -> None:
    """EfficientNet-Lite0 features from the development tool, imported into the cache."""
    from .features.importing import import_features

    out = work / PRETRAINED_NPY
    if not (out / ".complete").is_file():
        subprocess.run([pt_python, str(TOOL), str(data / "videos"), str(out), "--pose", str(data / "pose"),
                        "--bodypart", "midbody", "--crop", str(CROP)], check=True)
        (out / ".complete").write_text("ok\n")
    import_features(cfg, PRETRAINED_NAME, out, tool="shared/tools/pretrained_features.py "
                    "(EfficientNet-Lite0, ImageNet)", progress=False)


# --------------------------------------------------------------------------- scoring


def pooled_pr_auc(labels: list[np.ndarray], probs: list[np.ndarray]) -> list[float]:
    y, p = np.concatenate(labels), np.concatenate(probs)
    return [binary_metrics(y[:, j], p[:, j], 0.5)["pr_auc"] for j in range(y.shape[1])]


def clean_labels(data: Path, vid: str) -> np.ndarray:
    return read_labels(data / "labels" / f"{vid}.csv", "thesis", BEHAVIORS).matrix


def _fold_mean_pr_auc(labels: list[list[np.ndarray]], probs: list[list[np.ndarray]]) -> list[float]:
    """Each fold's PR-AUC per behaviour (its test videos pooled), averaged over the folds."""
    return [float(x) for x in np.mean([pooled_pr_auc(y, p) for y, p in zip(labels, probs, strict=True)], axis=0)]


def fold_predictions(run: Any, folds: list, name: str, data: Path) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Per fold, the clean labels and the out-of-fold probabilities of model ``name``'s test videos."""
    ys: list[list[np.ndarray]] = []
    ps: list[list[np.ndarray]] = []
    for fold in folds:
        result = run.read_fold(name, fold, BEHAVIORS)
        ys.append([clean_labels(data, vid) for vid in result.test])
        ps.append(list(result.test.values()))
    return ys, ps


def score_run(run_dir: Path, data: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per behaviour and model of a run, on the clean labels: the pooled out-of-fold PR-AUC,
    and the mean over folds of each fold's own (which does not mix probabilities of
    different folds' models on one scale: under ``auto``, of different kinds)."""
    from .report import ENSEMBLE, add_ensemble, load_run

    run = load_run(run_dir)  # validation labels as training saw them (moved edges too)
    add_ensemble(run)
    pooled, fold_means = {}, {}
    for name in sorted(run.models):
        ys = [[clean_labels(data, vid) for vid in fold.test] for fold in run.folds]
        ps = [[r.test[vid] for vid in r.fold.test] for r in run.models[name]]
        key = name.split("/", 1)[-1] if name != ENSEMBLE else name
        pooled[key] = pooled_pr_auc([y for f in ys for y in f], [p for f in ps for p in f])
        fold_means[key] = _fold_mean_pr_auc(ys, ps)
    return pooled, fold_means


def logistic_baseline(cfg: Config, run_dir: Path, data: Path,
                      name: str | None = None) -> tuple[list[float], list[float]]:
    """Per-frame logistic regression per behaviour, fitted on each fold's non-test videos:
    its pooled out-of-fold PR-AUC and its mean over folds (as :func:`score_run`), on the
    features of backbone or input set ``name`` (default: the first backbone)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from .dataset import load_dataset
    from .runs import RunFolder

    videos = {v.video_id: v for v in load_dataset(cfg, name or cfg.extract.backbones[0])}
    feats = {k: np.asarray(v.features[:]) for k, v in videos.items()}
    for v in videos.values():
        v.features.close()
    ys: list[list[np.ndarray]] = []
    ps: list[list[np.ndarray]] = []
    for fold in RunFolder(run_dir).read_folds():
        fit = [*fold.train, *fold.val]
        x = np.concatenate([feats[v] for v in fit])
        y = np.concatenate([videos[v].labels.matrix for v in fit])
        scaler = StandardScaler().fit(x)
        models = []
        for j in range(len(BEHAVIORS)):
            keep = y[:, j] >= 0
            models.append(LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
                          .fit(scaler.transform(x[keep]), y[keep, j]))
        ps.append([np.column_stack([m.predict_proba(scaler.transform(feats[vid]))[:, 1] for m in models])
                   for vid in fold.test])
        ys.append([clean_labels(data, vid) for vid in fold.test])
    return pooled_pr_auc([y for f in ys for y in f], [p for f in ps for p in f]), _fold_mean_pr_auc(ys, ps)


def prevalence(data: Path) -> list[float]:
    y = np.concatenate([read_labels(p, "thesis", BEHAVIORS).matrix for p in sorted((data / "labels").glob("*.csv"))])
    return [float((y[:, j] == 1).mean()) for j in range(y.shape[1])]


# --------------------------------------------------------------------------- protocol


def run_regime(regime: Regime, work: Path, models: list[str], validations: list[str],
               pt_python: str | None, resume: bool = False, seed: int = SEED) -> dict[str, Any] | None:
    """Train every model of one regime under each validation mode; its scores and timings
    (``resume``: the finished folds of an earlier run of the same config are kept)."""
    from .sequences.training import train

    if regime.pretrained and not pt_python:
        log.info("%s: skipped (PT_PYTHON not given: the pretrained-features tool needs its own venv)",
                 regime.name)
        return None
    data = prepare_dataset(regime.dataset, work, seed)
    labels = training_labels(regime, data, work, seed)
    probe = regime_config(regime, work, labels, work / "runs" / "probe", models)
    if regime.pretrained:
        pretrained_features(probe, data, work, pt_python)
    else:
        random_features(probe)
    result: dict[str, Any] = {"regime": regime.name, "what": regime.what, "behaviors": list(BEHAVIORS),
                              "prevalence": prevalence(data), "label_noise": label_noise(regime, data, labels),
                              "runs": {}}
    for mode in validations:
        run_dir = work / "runs" / f"{regime.name}-{mode}"
        select = "validation" if mode == "videos" else AUTO_SELECT
        cfg = regime_config(regime, work, labels, run_dir, models,
                            {"train.validation": mode, "train.auto.select": select,
                             "train.auto.prefer": AUTO_PREFER if select == AUTO_SELECT else "best"})
        t0 = time.perf_counter()
        train(cfg, progress=False, overwrite=not resume)
        scores, fold_means = score_run(run_dir, data)
        result["runs"][mode] = {"scores": scores, "fold_means": fold_means, "seconds": time.perf_counter() - t0}
        log.info("%s / %s: %s (%.0f s)", regime.name, mode,
                 {m: round(float(np.mean(s)), 3) for m, s in scores.items()}, time.perf_counter() - t0)
    result["logistic"], result["logistic_fold_means"] = logistic_baseline(probe, run_dir, data)
    return result


def run_quality(work: Path, regimes: list[str], models: list[str], validations: list[str],
                pt_python: str | None = None, streams_on: tuple[str, ...] = ("no_cue",),
                stream_models: tuple[str, ...] | None = None, resume: bool = False,
                seed: int = SEED) -> dict[str, Any]:
    """Every asked regime; the results as written to ``work/bench_quality.json``
    (``seed``: the videos' seed, :data:`SEED` unless another is asked).

    Regimes in ``streams_on`` also compare the input sets of :mod:`.bench_streams`
    (RGB, RGB + motion, pose, all three), training ``stream_models`` on each.
    """
    from .bench_streams import MODELS, run_streams

    check_pretrained(regimes, work, pt_python)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    out = {"date": time.strftime("%Y-%m-%d"), "seed": seed, "videos": N_VIDEOS, "models": models,
           "validations": validations, "seconds": 0.0, "regimes": results, "machine": _machine()}
    by_name = {r.name: r for r in REGIMES}
    for name in regimes:  # in the order asked; the figures are saved after each regime
        modes = validations if name == "few_videos" else validations[:1]
        res = run_regime(by_name[name], work, models, modes, pt_python, resume, seed)
        if res is not None:
            if name in streams_on:
                res["streams"] = run_streams(by_name[name], work, list(stream_models or MODELS), modes[0], seed)
            results.append(res)
        out["seconds"] = time.perf_counter() - t0
        write_json(work / "bench_quality.json", out)
    write_json(work / "bench_quality.json", out)
    return out


def _machine() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"


def format_quality(out: dict[str, Any]) -> str:
    """Markdown tables: per regime and validation mode, PR-AUC per behaviour and model."""
    lines = [f"bench-quality {out['date']}, seed {out['seed']}, {out['videos']} videos per regime, "
             f"leave-one-video-out, pooled out-of-fold PR-AUC on clean labels; {out['machine']}; "
             f"{out['seconds'] / 60:.0f} min", ""]
    for res in out["regimes"]:
        lines.append(f"### {res['regime']}: {res['what']}")
        if res["label_noise"]:
            lines.append(f"(training labels: {res['label_noise']:.1%} of positive frames wrong)")
        for mode, run in res["runs"].items():
            lines += ["", f"validation: {mode} ({run['seconds'] / 60:.1f} min)"]
            lines += _table(res, run, "scores", "logistic", "pooled out-of-fold PR-AUC")
            lines += ["", *(f"- {c}" for c in checks(res, mode))]
            if "fold_means" in run and "logistic_fold_means" in res:
                lines += _table(res, run, "fold_means", "logistic_fold_means", "mean over folds of each fold's PR-AUC")
                lines += ["", *(f"- {c}" for c in checks(res, mode, means=True))]
        if "streams" in res:
            from .bench_streams import format_streams

            lines += format_streams(res["streams"])
        lines.append("")
    return "\n".join(lines)


def _table(res: dict[str, Any], run: dict[str, Any], key: str, lr_key: str, what: str) -> list[str]:
    names = list(run[key])
    lines = ["", f"{what}:", "", "| behaviour | prevalence | logistic | " + " | ".join(names) + " |",
             "| --- | ---: | ---: | " + " | ".join("---:" for _ in names) + " |"]
    for j, b in enumerate(res["behaviors"]):
        lines.append(f"| {b} | {res['prevalence'][j]:.3f} | {res[lr_key][j]:.3f} | "
                     + " | ".join(f"{run[key][m][j]:.3f}" for m in names) + " |")
    means = {m: float(np.mean(run[key][m])) for m in names}
    lines.append(f"| mean | | {float(np.mean(res[lr_key])):.3f} | " + " | ".join(f"{means[m]:.3f}" for m in names) + " |")
    return lines
