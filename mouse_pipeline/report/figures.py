"""The report's figures: PR curves, confusion matrices, ethograms, training curves."""

from __future__ import annotations

import math
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..metrics import pr_curve
from ..plots import ethogram_figure
from ..streams import display_name
from .data import ENSEMBLE, RunData
from .scores import predicted


def _subplots(nrows: int, ncols: int, figsize: tuple[float, float], squeeze: bool = True) -> tuple[Figure, Any]:
    """A figure of its own (not pyplot's: no backend is chosen) and its axes."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _pooled_test(data: RunData, name: str, j: int) -> tuple[np.ndarray, np.ndarray]:
    y, p = [], []
    for fr in data.models[name]:
        for v in fr.fold.test:
            y.append(data.labels[v].matrix[:, j])
            p.append(fr.test[v][:, j])
    return np.concatenate(y), np.concatenate(p)


def _model_style(data: RunData, name: str) -> dict[str, Any]:
    if name == ENSEMBLE:
        return {"color": "black", "ls": "--", "lw": 1.8}
    i = list(data.models).index(name)
    return {"color": matplotlib.colormaps["tab10"](i % 10), "ls": "-", "lw": 1.5}


def fig_pr_curves(data: RunData, pooled: list[dict[str, Any]]) -> Figure:
    """Precision-recall curves on pooled test frames: a panel per behaviour, a line per model."""
    k = len(data.behaviors)
    fig, axes = _subplots(1, k, figsize=(4.3 * k, 4.2), squeeze=False)
    row = {(r["model"], r["behavior"]): r for r in pooled if r["stage"] == "raw"}
    for j, b in enumerate(data.behaviors):
        ax = axes[0, j]
        for name in data.models:
            y, p = _pooled_test(data, name, j)
            precision, recall = pr_curve(y, p)
            if len(precision):
                ax.step(recall, precision, where="post", label=f"{display_name(name)} (AP {row[(name, b)]['pr_auc']:.3f})",
                        **_model_style(data, name))
        prevalence = row[(next(iter(data.models)), b)]["prevalence"]
        if math.isfinite(prevalence):
            ax.axhline(prevalence, color="grey", lw=1, ls=":", label=f"chance = prevalence ({prevalence:.3f})")
        ax.set(title=b, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def fig_confusion(data: RunData, pooled: list[dict[str, Any]]) -> Figure:
    """Pooled post-processed confusion matrices: a row of panels per model, a column per behaviour."""
    names, k = list(data.models), len(data.behaviors)
    row = {(r["model"], r["behavior"]): r for r in pooled if r["stage"] == "post"}
    fig, axes = _subplots(len(names), k, figsize=(2.9 * k + 1.4, 2.5 * len(names) + 0.4), squeeze=False)
    for i, name in enumerate(names):
        for j, b in enumerate(data.behaviors):
            r = row[(name, b)]
            m = np.array([[r["tn"], r["fp"]], [r["fn"], r["tp"]]], dtype=float)
            totals = m.sum(axis=1, keepdims=True)
            pct = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
            ax = axes[i, j]
            ax.imshow(pct, cmap="Blues", vmin=0, vmax=1)
            for (a, c), v in np.ndenumerate(m):
                ax.text(c, a, f"{int(v):,}\n{100 * pct[a, c]:.1f}%", ha="center", va="center",
                        color="white" if pct[a, c] > 0.6 else "black", fontsize=8)
            ax.set_xticks([0, 1], ["predicted\nabsent", "predicted\npresent"], fontsize=7)
            ax.set_yticks([0, 1], ["absent", "present"], fontsize=7)
            if i == 0:
                ax.set_title(b, fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{display_name(name)}\nannotated", fontsize=8)
    fig.tight_layout()
    return fig


def fig_ethogram(data: RunData, vid: str) -> Figure:
    """Annotated bouts above each model's post-processed bouts, for one test video."""
    tracks = []
    for j, b in enumerate(data.behaviors):
        tracks.append((f"{b}: annotated", (data.labels[vid].matrix[:, j] == 1).astype(np.int8), j))
        for name, results in data.models.items():
            fr = next(r for r in results if vid in r.fold.test)
            tracks.append((display_name(name), predicted(fr.test[vid][:, j], fr.post[b], "post"), j))
    return ethogram_figure(tracks, data.fps[vid], f"test video {vid}: annotated bouts, then each "
                           "model's post-processed predictions")


def _validation_curves(history: dict, head: dict, h: int) -> list[np.ndarray]:
    """Head ``h``'s validation PR-AUC per epoch. A head refitted on every training frame
    (``inner_folds``, ``blocks`` with a refit) has no validation curve of its own: its
    curves are those of the fits that validated it (one per inner fold, or the blocks' fit),
    whose best epochs chose the refit's (``best_epoch``)."""
    own = np.atleast_1d(np.asarray(head.get("val_pr_auc", []), dtype=float))
    record = history.get("validation") or {}
    if not record.get("refit"):
        return [own] if own.size else []
    fits = record.get("inner") or [record]
    return [np.asarray(f["val_curves"][h], dtype=float) for f in fits
            if len(f.get("val_curves", [])) > h and len(f["val_curves"][h])]


def fig_training(data: RunData, name: str) -> Figure:
    """Training loss and validation PR-AUC per epoch, a line per fold (and head)."""
    fig, (a1, a2) = _subplots(1, 2, figsize=(11, 3.4))
    cmap = matplotlib.colormaps["tab10" if len(data.folds) <= 10 else "tab20"]
    styles = ["-", "--", ":", "-."]
    for fr in data.models[name]:
        colour = cmap(fr.fold.index % cmap.N)
        for h, head in enumerate(fr.history.get("heads", [])):
            loss = np.asarray(head.get("loss", []), dtype=float)
            outputs = head.get("outputs", [])
            label = f"fold {fr.fold.index}" + (f" ({outputs[0]})" if len(outputs) == 1 else "")
            ls = styles[h % len(styles)]
            a1.plot(np.arange(1, len(loss) + 1), loss, color=colour, ls=ls, lw=1.2, label=label,
                    marker="o" if len(loss) == 1 else None)  # one fit, one point: a line would not show
            best = head.get("best_epoch")
            for val in _validation_curves(fr.history, head, h):
                a2.plot(np.arange(1, len(val) + 1), np.where(np.isfinite(val), val, np.nan), color=colour,
                        ls=ls, lw=1.2, marker="o" if len(val) == 1 else None)
                if best and 0 < best <= len(val) and np.isfinite(val[best - 1]):
                    a2.plot([best], [val[best - 1]], "o", color=colour, ms=5)
    a1.set(title=f"{display_name(name)}: training loss", xlabel="epoch", ylabel="loss (masked, weighted BCE)")
    a2.set(title="validation PR-AUC (dot: epoch kept)", xlabel="epoch", ylabel="mean PR-AUC", ylim=(0, 1.02))
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_xlim()[1] - ax.get_xlim()[0] < 2:  # every fit one epoch (converged linear heads)
            ax.set(xlim=(0.5, 1.5), xticks=[1])
    if len(a1.lines) <= 16:
        a1.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


