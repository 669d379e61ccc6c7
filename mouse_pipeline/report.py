"""The evaluation a scientist reads: metrics tables, figures, report.html and report.md.

Reads only a run folder (see :mod:`mouse_pipeline.sequences.training` for its layout) and
the label files its config names. Every number is computed on out-of-fold *test* frames
(frames not annotated excluded); thresholds and post-processing come from each fold's
validation videos. Writes into the run folder:

- ``metrics.csv``: one row per model x behaviour x fold and stage (``raw``: validation
  threshold; ``post``: threshold + gap closing + minimum bout length), plus ``pooled``
  (all test frames together), ``mean`` and ``std`` (over folds) rows;
- ``metrics.json``: the same, as ``{"models", "behaviors", "pooled", "folds", "mean_std"}``;
- ``report.html`` (self-contained, figures embedded) and ``report.md`` (figures in
  ``figures/``).

An ``ensemble`` model (mean of the probabilities of every complete model) is added when
the run has two or more; its thresholds are chosen on validation probabilities too.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import matplotlib.pyplot as plt
import numpy as np

from .annotations import Labels, check_length, read_labels
from .config import Config
from .dataset import label_file
from .errors import RunError
from .features.store import cache_path, read_attrs
from .folds import Fold, load_folds
from .metrics import binary_metrics, bout_metrics, pr_curve, summarize_folds
from .plots import PALETTE, ethogram_figure, png_bytes
from .postprocess import apply as apply_post
from .postprocess import choose_postprocess
from .predict import load_run_config
from .scoring import write_rows_csv
from .sequences.windows import boundary_jump_ratio, window_starts

log = logging.getLogger(__name__)

# The thesis's published test figures (de Juan Pulido 2022), as printed by the final
# evaluation cell of its four classification notebooks (xavi2411/AutomatedMouseBehaviorRecognition,
# notebooks/2.2.1, 2.2.2, 2.3.1, 2.3.2, commit 4d220d6). 17 videos, 5 test videos (33,000
# frames), ImageNet features, one binary model per behaviour, threshold 0.5; PR-AUC is Keras's
# interpolated AUC(curve="PR"). The test videos also served for early stopping, so these
# figures are optimistic. Rounded to 3 decimals.
THESIS_FIGURES: dict[str, dict[str, dict[str, float]]] = {
    "ResNet50V2 + LSTM": {
        "grooming": {"accuracy": 0.902, "precision": 0.412, "recall": 0.946, "pr_auc": 0.679},
        "mid_rearing": {"accuracy": 0.897, "precision": 0.518, "recall": 0.797, "pr_auc": 0.702},
        "wall_rearing": {"accuracy": 0.918, "precision": 0.671, "recall": 0.785, "pr_auc": 0.792}},
    "InceptionResNetV2 + LSTM": {
        "grooming": {"accuracy": 0.909, "precision": 0.426, "recall": 0.876, "pr_auc": 0.690},
        "mid_rearing": {"accuracy": 0.902, "precision": 0.535, "recall": 0.748, "pr_auc": 0.691},
        "wall_rearing": {"accuracy": 0.914, "precision": 0.668, "recall": 0.737, "pr_auc": 0.770}},
    "ResNet50V2 + TCN": {
        "grooming": {"accuracy": 0.950, "precision": 0.681, "recall": 0.537, "pr_auc": 0.589},
        "mid_rearing": {"accuracy": 0.887, "precision": 0.415, "recall": 0.104, "pr_auc": 0.201},
        "wall_rearing": {"accuracy": 0.840, "precision": 0.433, "recall": 0.570, "pr_auc": 0.411}},
    "InceptionResNetV2 + TCN": {
        "grooming": {"accuracy": 0.942, "precision": 0.577, "recall": 0.635, "pr_auc": 0.586},
        "mid_rearing": {"accuracy": 0.912, "precision": 0.592, "recall": 0.596, "pr_auc": 0.602},
        "wall_rearing": {"accuracy": 0.888, "precision": 0.569, "recall": 0.739, "pr_auc": 0.716}},
}

FRAME_KEYS = ("accuracy", "precision", "recall", "f1", "pr_auc", "roc_auc", "tp", "fp", "tn", "fn",
              "n_frames", "n_positive", "prevalence")
BOUT_KEYS = ("bout_precision", "bout_recall", "bout_f1", "bout_count_error", "bout_duration_error_s")
MAX_ETHOGRAMS = 12


@dataclass
class FoldResult:
    """What one model produced in one fold."""

    fold: Fold
    test: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    post: dict[str, dict]
    history: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@dataclass
class RunData:
    run: Path
    cfg: Config
    folds: list[Fold]
    behaviors: tuple[str, ...]
    models: dict[str, list[FoldResult]]
    incomplete: list[str]
    labels: dict[str, Labels]
    fps: dict[str, float]


# --------------------------------------------------------------------------- loading


def _read_probs(path: Path) -> tuple[dict, dict]:
    test, val = {}, {}
    with h5py.File(path, "r") as f:
        for split, out in (("test", test), ("val", val)):
            if split in f:
                for vid in f[split]:
                    out[vid] = f[split][vid][()]
    return test, val


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_run(run: str | Path) -> RunData:
    """Folds, per-model fold results, labels and frame rates of a run folder."""
    run = Path(run)
    cfg = load_run_config(run)
    if not (run / "folds.json").is_file():
        raise RunError(f"{run}: no folds.json; run `mouse-pipeline train` first")
    folds = load_folds(run / "folds.json")
    models, incomplete = {}, []
    for b in cfg.extract.backbones:
        for m in cfg.train.models:
            name = f"{b}/{m}"
            results = []
            for fold in folds:
                d = run / b / m / f"fold_{fold.index}"
                if not (d / "fold.json").is_file():
                    continue
                test, val = _read_probs(d / "probs.h5")
                results.append(FoldResult(fold, test, val, _json(d / "postprocess.json"),
                                          _json(d / "history.json"), _json(d / "timings.json"),
                                          _json(d / "fold.json")))
            if len(results) == len(folds):
                models[name] = results
            else:
                incomplete.append(f"{name} ({len(results)} of {len(folds)} folds)")
                log.warning("%s: only %d of %d folds finished; left out of the report", name,
                            len(results), len(folds))
    if not models:
        raise RunError(f"{run}: no model has finished all its folds; run `mouse-pipeline train` "
                       "(it resumes where it stopped)")
    behaviors = tuple(cfg.data.behaviors)
    labels, fps = {}, {}
    first = next(iter(models.values()))
    backbone = next(iter(models)).split("/")[0]
    for fr in first:
        for vid, p in {**fr.test, **fr.val}.items():
            if vid in labels:
                continue
            fps[vid] = _fps(cfg, backbone, vid)
            lf = label_file(cfg, vid)
            if lf is None:
                raise RunError(f"{cfg.data.labels}: label file of {vid!r} is gone; the report needs it")
            lab = read_labels(lf, cfg.data.label_format, behaviors,
                              columns=dict(cfg.data.label_columns) or None, fps=fps[vid], n_frames=len(p))
            labels[vid] = check_length(lab, len(p), cfg.data.max_frame_mismatch, vid)
    return RunData(run, cfg, folds, behaviors, models, incomplete, labels, fps)


def _fps(cfg: Config, backbone: str, vid: str) -> float:
    if cfg.data.fps:
        return float(cfg.data.fps)
    path = cache_path(cfg.extract.cache, backbone, vid)
    if path.is_file():
        return float(read_attrs(path).get("fps", 30.0))
    log.warning("%s: frame rate unknown (cache file gone, data.fps unset); assuming 30", vid)
    return 30.0


def add_ensemble(data: RunData) -> None:
    """Mean probabilities of all complete models; post-processing chosen on validation."""
    if len(data.models) < 2:
        return
    names = list(data.models)
    grids = (list(data.cfg.postprocess.max_gap), list(data.cfg.postprocess.min_len))
    results = []
    for i, fold in enumerate(data.folds):
        parts = [data.models[n][i] for n in names]
        test = {v: np.mean([p.test[v] for p in parts], axis=0) for v in fold.test}
        val = {v: np.mean([p.val[v] for p in parts], axis=0) for v in fold.val}
        post = {}
        for j, b in enumerate(data.behaviors):
            params = choose_postprocess([data.labels[v].matrix[:, j] for v in fold.val],
                                        [val[v][:, j] for v in fold.val], *grids)
            post[b] = {"threshold": params.threshold, "max_gap": params.max_gap, "min_len": params.min_len}
        results.append(FoldResult(fold, test, val, post, meta=parts[0].meta))
    data.models["ensemble"] = results


# --------------------------------------------------------------------------- metrics


def _score(y: list[np.ndarray], p: list[np.ndarray], post: dict, fps: list[float], stage: str) -> dict:
    """Frame metrics on concatenated frames; bout metrics summed over videos (never joined)."""
    yy, pp = np.concatenate(y), np.concatenate(p)
    raw = binary_metrics(yy, pp, post["threshold"])
    if stage == "raw":
        binary = [(q >= post["threshold"]).astype(np.int8) for q in p]
        out = dict(raw)
    else:
        binary = [apply_post(q[:, None], post["threshold"], post["max_gap"], post["min_len"])[:, 0] for q in p]
        out = binary_metrics(yy, np.concatenate(binary).astype(float), 0.5)
        out["pr_auc"], out["roc_auc"] = raw["pr_auc"], raw["roc_auc"]  # ranking metrics: raw scores
    n_true = n_pred = n_match = 0
    count_err = dur_err = 0.0
    for t, b, f in zip(y, binary, fps, strict=True):
        bm = bout_metrics((t == 1).astype(np.int8), b, fps=f)
        n_true, n_pred, n_match = n_true + bm["n_true"], n_pred + bm["n_pred"], n_match + bm["n_matched"]
        count_err += bm["count_error"]
        dur_err += bm["duration_error_s"]
    nan = float("nan")
    out.update({"bout_precision": n_match / n_pred if n_pred else nan,
                "bout_recall": n_match / n_true if n_true else nan,
                "bout_f1": 2 * n_match / (n_true + n_pred) if n_true + n_pred else nan,
                "bout_count_error": count_err, "bout_duration_error_s": dur_err})
    return out


def compute_metrics(data: RunData) -> dict[str, list[dict]]:
    """Rows per model x behaviour x fold x stage, pooled rows, and mean/std over folds."""
    folds_rows, pooled, mean_std = [], [], []
    for name, results in data.models.items():
        for j, b in enumerate(data.behaviors):
            for stage in ("raw", "post"):
                per_fold = []
                ys, fs = [], []
                for fr in results:
                    vids = list(fr.fold.test)
                    y = [data.labels[v].matrix[:, j] for v in vids]
                    p = [fr.test[v][:, j] for v in vids]
                    f = [data.fps[v] for v in vids]
                    row = {"model": name, "behavior": b, "fold": str(fr.fold.index), "stage": stage,
                           **_score(y, p, fr.post[b], f, stage)}
                    per_fold.append(row)
                    ys.append((y, p, f, fr.post[b]))
                folds_rows.extend(per_fold)
                # pooled: each fold's frames judged with that fold's own threshold
                y_all, b_all, p_all = [], [], []
                for y, p, f, post in ys:
                    y_all += y
                    p_all += p
                    b_all += [(q >= post["threshold"]).astype(float) if stage == "raw" else
                              apply_post(q[:, None], post["threshold"], post["max_gap"], post["min_len"])[:, 0].astype(float)
                              for q in p]
                    fs += f
                pooled_row = _score(y_all, b_all, {"threshold": 0.5, "max_gap": 0, "min_len": 1}, fs, "raw")
                ranking = binary_metrics(np.concatenate(y_all), np.concatenate(p_all), 0.5)
                pooled_row["pr_auc"], pooled_row["roc_auc"] = ranking["pr_auc"], ranking["roc_auc"]
                pooled.append({"model": name, "behavior": b, "fold": "pooled", "stage": stage, **pooled_row})
                summary = summarize_folds([{k: r[k] for k in FRAME_KEYS + BOUT_KEYS} for r in per_fold])
                for stat in ("mean", "std"):
                    mean_std.append({"model": name, "behavior": b, "fold": stat, "stage": stage,
                                     **{k: summary[k][stat] for k in summary}})
    return {"folds": folds_rows, "pooled": pooled, "mean_std": mean_std}


# --------------------------------------------------------------------------- figures


def _pooled_test(data: RunData, name: str, j: int) -> tuple[np.ndarray, np.ndarray]:
    y, p = [], []
    for fr in data.models[name]:
        for v in fr.fold.test:
            y.append(data.labels[v].matrix[:, j])
            p.append(fr.test[v][:, j])
    return np.concatenate(y), np.concatenate(p)


def fig_pr_curves(data: RunData, pooled: list[dict]) -> plt.Figure:
    k = len(data.behaviors)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 4), squeeze=False)
    for j, b in enumerate(data.behaviors):
        ax = axes[0, j]
        prevalence = float("nan")
        for i, name in enumerate(data.models):
            y, p = _pooled_test(data, name, j)
            precision, recall = pr_curve(y, p)
            ap = next(r["pr_auc"] for r in pooled if r["model"] == name and r["behavior"] == b and r["stage"] == "raw")
            prevalence = float(np.mean(y[y >= 0] == 1)) if np.any(y >= 0) else float("nan")
            if len(precision):
                ax.plot(recall, precision, color=PALETTE[i % len(PALETTE)], lw=1.6,
                        ls="--" if name == "ensemble" else "-", label=f"{name} (AP {ap:.3f})")
        if math.isfinite(prevalence):
            ax.axhline(prevalence, color="grey", lw=1, ls=":", label=f"chance ({prevalence:.3f})")
        ax.set(title=b, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def fig_confusion(data: RunData, pooled: list[dict]) -> plt.Figure:
    names, k = list(data.models), len(data.behaviors)
    fig, axes = plt.subplots(len(names), k, figsize=(3.1 * k, 2.8 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j, b in enumerate(data.behaviors):
            r = next(r for r in pooled if r["model"] == name and r["behavior"] == b and r["stage"] == "post")
            m = np.array([[r["tn"], r["fp"]], [r["fn"], r["tp"]]], dtype=float)
            rows = m.sum(axis=1, keepdims=True)
            pct = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
            ax = axes[i, j]
            ax.imshow(pct, cmap="Blues", vmin=0, vmax=1)
            for (a, c), v in np.ndenumerate(m):
                ax.text(c, a, f"{int(v)}\n{100 * pct[a, c]:.1f}%", ha="center", va="center",
                        color="white" if pct[a, c] > 0.6 else "black", fontsize=8)
            ax.set_xticks([0, 1], ["pred. absent", "pred. present"], fontsize=7)
            ax.set_yticks([0, 1], ["absent", "present"], fontsize=7)
            ax.set_title(f"{name}\n{b}", fontsize=8)
    fig.tight_layout()
    return fig


def fig_training(data: RunData, name: str) -> plt.Figure:
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for fr in data.models[name]:
        for h in fr.history.get("heads", []):
            lab = f"fold {fr.fold.index}" + (f" {h['outputs'][0]}" if len(h.get("outputs", [])) == 1 else "")
            epochs = np.arange(1, len(h.get("loss", [])) + 1)
            line, = a1.plot(epochs, h.get("loss", []), lw=1, label=lab)
            vals = np.array(h.get("val_pr_auc", []), dtype=float)
            a2.plot(epochs[:len(vals)], np.where(np.isfinite(vals), vals, np.nan), lw=1, color=line.get_color())
            if h.get("best_epoch"):
                a2.axvline(h["best_epoch"], color=line.get_color(), lw=0.6, ls=":")
    a1.set(title=f"{name}: training loss", xlabel="epoch", ylabel="masked weighted BCE")
    a2.set(title="validation PR-AUC (dotted: kept epoch)", xlabel="epoch", ylabel="mean PR-AUC", ylim=(0, 1))
    a1.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def fig_ethogram(data: RunData, vid: str) -> plt.Figure:
    tracks = []
    for j, b in enumerate(data.behaviors):
        tracks.append((f"{b}: true", (data.labels[vid].matrix[:, j] == 1).astype(np.int8), j))
        for name, results in data.models.items():
            fr = next(r for r in results if vid in r.fold.test)
            post = fr.post[b]
            pred = apply_post(fr.test[vid][:, j:j + 1], post["threshold"], post["max_gap"], post["min_len"])[:, 0]
            tracks.append((f"  {name}", pred, j))
    return ethogram_figure(tracks, data.fps[vid], f"{vid} (test video): true bouts above predicted bouts")


# --------------------------------------------------------------------------- cost


def cost_rows(data: RunData) -> list[dict]:
    """Extraction, training and inference cost, and the window-boundary jump ratio."""
    rows = []
    for name, results in data.models.items():
        backbone = name.split("/")[0] if name != "ensemble" else "-"
        ext = []
        if name != "ensemble":
            for v in data.labels:
                path = cache_path(data.cfg.extract.cache, backbone, v)
                if path.is_file():
                    val = read_attrs(path).get("extract_frames_per_s")
                    if val:
                        ext.append(float(val))
        fit = sum(fr.timings.get("fit_seconds", 0.0) for fr in results)
        inf = [fr.timings["inference_frames_per_s"] for fr in results if fr.timings.get("inference_frames_per_s")]
        ratios = []
        for fr in results:
            length, stride = fr.meta.get("window"), fr.meta.get("inference_stride")
            if not length:
                continue
            for p in fr.test.values():
                r = boundary_jump_ratio(p, window_starts(len(p), length, stride), length)
                if math.isfinite(r):
                    ratios.append(r)
        nan = float("nan")
        rows.append({"model": name, "extract_frames_per_s": float(np.mean(ext)) if ext else nan,
                     "train_minutes": fit / 60 if name != "ensemble" else nan,
                     "inference_frames_per_s": float(np.mean(inf)) if inf else nan,
                     "boundary_jump_ratio": float(np.mean(ratios)) if ratios else nan})
    return rows


# --------------------------------------------------------------------------- rendering


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        return "–" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def _table(header: list[str], rows: list[list]) -> tuple[str, str]:
    """The same table as HTML and as Markdown (cells escaped for HTML)."""
    h = "<table><thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in header) + "</tr></thead><tbody>"
    h += "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    h += "</tbody></table>"
    md = "| " + " | ".join(str(c) for c in header) + " |\n|" + "---|" * len(header) + "\n"
    md += "".join("| " + " | ".join(_fmt(c).replace("|", "\\|") for c in r) + " |\n" for r in rows)
    return h, md


def _thesis_tables(data: RunData, metrics: dict) -> list[tuple[str, str, str]]:
    """Per behaviour: rows of metrics, a column per model (the thesis's layout)."""
    out = []
    names = list(data.models)
    pick = {(r["model"], r["behavior"], r["stage"]): r for r in metrics["pooled"]}
    ms = {(r["model"], r["behavior"], r["stage"], r["fold"]): r for r in metrics["mean_std"]}
    for b in data.behaviors:
        rows = []
        for label, key, stage in (("binary accuracy", "accuracy", "raw"), ("precision", "precision", "raw"),
                                  ("recall", "recall", "raw"), ("PR-AUC", "pr_auc", "raw"),
                                  ("F1", "f1", "raw"), ("bout F1", "bout_f1", "raw"),
                                  ("F1, post-processed", "f1", "post"), ("bout F1, post-processed", "bout_f1", "post")):
            cells = []
            for n in names:
                pooled = pick[(n, b, stage)][key]
                m, s = ms[(n, b, stage, "mean")].get(key), ms[(n, b, stage, "std")].get(key)
                cells.append(f"{_fmt(pooled)} ({_fmt(m)} ± {_fmt(s)})")
            rows.append([label, *cells])
        h, md = _table(["metric", *names], rows)
        out.append((b, h, md))
    return out


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:2em}table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
.caption{color:#555;font-size:.9em;margin:.2em 0 1.2em}.note{background:#fff8e1;padding:.5em .8em;
border-left:4px solid #f0b400}code{background:#f5f5f5;padding:0 .2em}"""


def write_report(run_dir: str | Path) -> Path:
    """Compute metrics and figures for a run and write its report files; returns report.html."""
    data = load_run(run_dir)
    add_ensemble(data)
    metrics = compute_metrics(data)
    run = data.run
    rows = metrics["folds"] + metrics["pooled"] + metrics["mean_std"]
    keys = ["model", "behavior", "fold", "stage", *FRAME_KEYS, *BOUT_KEYS]
    write_rows_csv(run / "metrics.csv", [{k: r.get(k) for k in keys} for r in rows], keys)
    _write_text(run / "metrics.json", json.dumps(
        {"models": list(data.models), "behaviors": list(data.behaviors), **metrics},
        indent=1, default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else float(v)
    ).replace("NaN", "null"))
    figures: list[tuple[str, str, bytes, str]] = []  # (section, file, png, caption)
    figures.append(("pr", "pr_curves.png", png_bytes(fig_pr_curves(data, metrics["pooled"])),
                    "Precision-recall curves on all out-of-fold test frames, one panel per behaviour, "
                    "every model overlaid (AP = average precision = PR-AUC). The dotted line is chance: "
                    "a classifier guessing at random has precision equal to the prevalence."))
    figures.append(("cm", "confusion.png", png_bytes(fig_confusion(data, metrics["pooled"])),
                    "Confusion matrices on all test frames after post-processing: rows are the "
                    "annotation, columns the prediction; counts of frames and the percentage of the row."))
    test_videos = [v for f in data.folds for v in f.test]
    for vid in test_videos[:MAX_ETHOGRAMS]:
        figures.append(("eth", f"ethogram_{vid}.png", png_bytes(fig_ethogram(data, vid)),
                        f"Ethogram of test video {vid}: for each behaviour, the annotated bouts (top) and "
                        "each model's post-processed predictions below; time in seconds."))
    for name in data.models:
        if name != "ensemble":
            figures.append(("train", f"training_{name.replace('/', '_')}.png", png_bytes(fig_training(data, name)),
                            f"Training of {name}: loss on training windows (left) and mean PR-AUC on the "
                            "validation videos after each epoch (right); the dotted line marks the epoch kept "
                            "(early stopping on validation, never on test)."))
    fig_dir = run / "figures"
    fig_dir.mkdir(exist_ok=True)
    for _, fname, png, _ in figures:
        _write_bytes(fig_dir / fname, png)
    html_doc, md_doc = _render(data, metrics, figures, cost_rows(data), len(test_videos))
    _write_text(run / "report.md", md_doc)
    _write_text(run / "report.html", html_doc)
    return run / "report.html"


def _render(data: RunData, metrics: dict, figures, cost, n_test: int) -> tuple[str, str]:
    cfg = data.cfg
    esc = html.escape
    prevalence = {b: np.mean(np.concatenate([lab.matrix[:, j][lab.matrix[:, j] >= 0] == 1
                                             for lab in data.labels.values()])) for j, b in enumerate(data.behaviors)}
    intro = (f"Run <code>{esc(str(data.run))}</code>, reported {_dt.datetime.now():%Y-%m-%d %H:%M}. "
             f"{len(data.labels)} labelled videos, {len(data.folds)} folds "
             f"(<code>{esc(cfg.train.folds.scheme)}</code>), backbones {esc(', '.join(cfg.extract.backbones))}, "
             f"models {esc(', '.join(cfg.train.models))}. Every number below is computed on out-of-fold "
             "<b>test</b> videos only (frames not annotated are left out). Early stopping, thresholds and "
             "post-processing were chosen on validation videos taken from the training side of each fold; "
             "a test video never influenced any choice. Pooled = all test frames together; "
             "in parentheses: mean ± standard deviation over folds.")
    prev_h, prev_md = _table(["behaviour", "prevalence (annotated frames)"], [[b, prevalence[b]] for b in data.behaviors])
    H = [f"<!doctype html><html><head><meta charset='utf-8'><title>mouse-pipeline report: "
         f"{esc(data.run.name)}</title><style>{CSS}</style></head><body>",
         f"<h1>Behaviour recognition report: {esc(data.run.name)}</h1><p>{intro}</p>", prev_h]
    M = [f"# Behaviour recognition report: {data.run.name}\n", intro.replace("<code>", "`").replace("</code>", "`")
         .replace("<b>", "**").replace("</b>", "**") + "\n", prev_md]
    if data.incomplete:
        note = "Models left out because not all their folds finished: " + ", ".join(data.incomplete)
        H.append(f"<p class='note'>{esc(note)}</p>")
        M.append(f"> {note}\n")
    H.append("<h2>Results per behaviour (thesis layout)</h2>")
    M.append("\n## Results per behaviour (thesis layout)\n")
    for b, h, md in _thesis_tables(data, metrics):
        H += [f"<h3>{esc(b)}</h3>", h]
        M += [f"\n### {b}\n", md]
    H.append("<p class='caption'>Binary accuracy, precision, recall and F1 use the threshold chosen on "
             "validation videos; 'post-processed' adds gap closing and a minimum bout length, also chosen "
             "on validation. Bout F1: a predicted bout matches an annotated one when they overlap with "
             "intersection over union ≥ 0.5. '–': undefined (e.g. no positive frame, or nothing predicted).</p>")
    H.append("<h2>The thesis's published figures</h2>")
    M.append("\n## The thesis's published figures\n")
    if THESIS_FIGURES:
        rows = [[m, b, *(v.get(k) for k in ("accuracy", "precision", "recall", "pr_auc"))]
                for m, per in THESIS_FIGURES.items() for b, v in per.items()]
        h, md = _table(["thesis model", "behaviour", "accuracy", "precision", "recall", "PR-AUC"], rows)
        text = ("Different data: the thesis's 17 real open-field videos with ImageNet features, 5 test "
                "videos (33,000 frames) that also served for early stopping (so optimistic), threshold 0.5, "
                "PR-AUC as Keras's interpolated AUC. Source: the final evaluation cells of the thesis code's "
                "notebooks. Set these beside the tables above for orientation, not number for number.")
        H += [f"<p>{esc(text)}</p>", h]
        M += [text + "\n", md]
    else:
        text = ("The thesis's published test figures are not included in this version: they could not be "
                "obtained in a citable form, and none are invented. (They were measured on different data: "
                "17 open-field videos with ImageNet features, with test videos also used for early stopping.)")
        H.append(f"<p class='note'>{esc(text)}</p>")
        M.append(text + "\n")
    sections = {"pr": "Precision-recall curves", "cm": "Confusion matrices",
                "eth": "Ethograms of test videos", "train": "Training curves"}
    for key, title in sections.items():
        H.append(f"<h2>{title}</h2>")
        M.append(f"\n## {title}\n")
        if key == "eth" and n_test > MAX_ETHOGRAMS:
            H.append(f"<p>First {MAX_ETHOGRAMS} of {n_test} test videos.</p>")
        for sec, fname, png, caption in figures:
            if sec == key:
                H += [_img(png, caption), f"<p class='caption'>{esc(caption)}</p>"]
                M += [f"![{caption}](figures/{fname})\n", f"*{caption}*\n"]
    H.append("<h2>Computational cost</h2>")
    M.append("\n## Computational cost\n")
    h, md = _table(["model", "extraction frames/s (backbone)", "training minutes (all folds)",
                    "inference frames/s", "window-boundary jump ratio"],
                   [[r["model"], r["extract_frames_per_s"], r["train_minutes"], r["inference_frames_per_s"],
                     r["boundary_jump_ratio"]] for r in cost])
    cap = ("Extraction: frames per second of stage 1 on this run's videos (recorded in the cache). "
           "Training: total fit time over all folds. Inference: frames per second of the sequence model "
           "on test videos. Window-boundary jump ratio: mean frame-to-frame change of probability where a "
           "prediction window starts or ends, divided by the mean elsewhere; about 1 means predictions do "
           "not depend on where windows start (the thesis fork's output shows about 19).")
    H += [h, f"<p class='caption'>{esc(cap)}</p>"]
    M += [md, f"\n{cap}\n"]
    H.append("<h2>Folds</h2>")
    M.append("\n## Folds\n")
    h, md = _table(["fold", "training videos", "validation videos", "test videos"],
                   [[f.index, ", ".join(f.train), ", ".join(f.val), ", ".join(f.test)] for f in data.folds])
    H += [h, "</body></html>"]
    M += [md]
    return "\n".join(H), "\n".join(M)


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
