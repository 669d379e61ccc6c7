"""The report's sections, in reading order, and the thesis's published figures set
beside ours."""

from __future__ import annotations

import datetime as _dt
import html
import math
from typing import Any

import numpy as np

from .. import __version__
from ..features.store import sanitize_id
from ..folds import Fold
from ..plots import png_bytes
from ..streams import display_name
from .data import ENSEMBLE, RunData
from .document import Cell, Document, Group, _fmt, _md_text
from .figures import fig_confusion, fig_ethogram, fig_pr_curves, fig_training

# The thesis's published test figures (de Juan Pulido 2022), as printed by the final
# evaluation cell of its four classification notebooks (xavi2411/AutomatedMouseBehaviorRecognition,
# notebooks/2.2.1, 2.2.2, 2.3.1, 2.3.2, commit 4d220d6). 17 videos, 5 test videos (33,000
# frames), ImageNet features, one binary model per behaviour, threshold 0.5; PR-AUC is Keras's
# interpolated AUC(curve="PR"). The test videos also served for early stopping, so these
# figures are optimistic. Rounded to 3 decimals. Layout: {thesis model: {behaviour: {metric:
# value}}} with the metrics accuracy, precision, recall, pr_auc. Empty: the report says that
# the figures are not included.
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
# The model of this project that corresponds to each thesis model (for "ours" beside it).
THESIS_MODEL_NAMES = {"ResNet50V2 + LSTM": "resnet50v2/lstm",
                      "InceptionResNetV2 + LSTM": "inception_resnet_v2/lstm",
                      "ResNet50V2 + TCN": "resnet50v2/tcn",
                      "InceptionResNetV2 + TCN": "inception_resnet_v2/tcn"}
THESIS_LABEL = "different data (thesis: 17 videos, ImageNet features)"
MAX_ETHOGRAMS = 12


NAN_NOTE = ("“–”: undefined, e.g. recall and PR-AUC without a positive test frame, precision "
            "when no frame was predicted present, a standard deviation from fewer than two folds.")


def _value_cell(value: float, mean: float | None = None, std: float | None = None, best: bool = False,
                n: tuple[float, int] | None = None) -> Cell:
    """A pooled value, and below it the mean ± std over folds (``n``: over how many of how
    many folds the metric was defined; said when some were not)."""
    main = _fmt(value)
    h = f'<span class="best">{html.escape(main)}</span>' if best else html.escape(main)
    md = f"**{main}**" if best and main != "–" else main
    if mean is not None:
        sd = f"{_fmt(mean)} ± {_fmt(std)}"
        if n is not None and 0 < n[0] < n[1]:
            sd += f", {int(n[0])} of {n[1]} folds"
        h += f'<span class="sd">{html.escape(sd)}</span>'
        md += f" ({sd})"
    return Cell(h, md)


def _unvalidated_thresholds(data: RunData) -> list[str]:
    """``fold <i>: <behaviour>, ...`` for every fold whose validation frames hold no positive
    frame of a behaviour (its threshold fell back to 0.5, :func:`.metrics.choose_threshold`)."""
    out = []
    for fold in data.folds:
        segments = [data.labels[v].matrix[a:b] for v, a, b in fold.val_segments if v in data.labels]
        if not segments:
            continue
        positives = np.sum([(m == 1).sum(axis=0) for m in segments], axis=0)
        missing = [b for b, n in zip(data.behaviors, positives, strict=True) if n == 0]
        if missing:
            out.append(f"fold {fold.index}: " + ", ".join(missing))
    return out


def _section_header(doc: Document, data: RunData, metrics: dict[str, Any]) -> None:
    cfg = data.cfg
    test_videos = [v for f in data.folds for v in f.test]
    folds = cfg.train.folds
    scheme = folds.scheme + (f", k = {folds.k}" if folds.scheme == "group_kfold" else "")
    scheme += _VALIDATION_SUMMARY[cfg.train.validation](cfg.train)
    complete = [n for n in data.models if n != ENSEMBLE]
    items = [("Videos", f"{len(data.labels)}: " + ", ".join(sorted(data.labels))),
             ("Folds", f"{len(data.folds)} ({scheme}); {len(test_videos)} test videos in all"),
             ("Backbones", ", ".join(dict.fromkeys(n.split('/')[0] for n in complete))),
             ("Models", ", ".join(complete)),
             ("Ensemble", data.ensemble_note),
             ("Behaviours", ", ".join(data.behaviors))]
    if data.incomplete:
        items.append(("Incomplete", ", ".join(f"{n} ({k} of {len(data.folds)} folds)"
                                               for n, k in data.incomplete.items())))
    doc.html.append('<dl class="summary">' + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items) + "</dl>")
    doc.md.append("\n" + "\n".join(f"- **{k}:** {_md_text(v)}" for k, v in items) + "\n")
    doc.para("Where the numbers come from: every figure and table is computed on out-of-fold test "
             "videos only, each predicted by the model of the fold that held it out, with frames "
             "not annotated left out. Early stopping, thresholds and post-processing were chosen "
             f"on {_VALIDATION_NOTE[cfg.train.validation]} of each fold; a test video never "
             "influenced any choice. \"Pooled\" means all test frames of all folds together, each "
             "fold's frames judged with that fold's own threshold.", cls="note")
    if data.incomplete:
        doc.para("Left out of this report because not all their folds finished: "
                 + ", ".join(f"{n} ({k} of {len(data.folds)} folds)" for n, k in data.incomplete.items())
                 + ". Run `mouse-pipeline train` again with the same config: it resumes them.", cls="note")
    blind = _unvalidated_thresholds(data)
    if blind:
        doc.para("No positive validation frame, so the threshold there could not be chosen and is "
                 "0.5 (and the post-processing none): " + "; ".join(blind) + ". Annotate that "
                 "behaviour in more videos, or read those folds' precision and recall with care.", cls="note")
    first = next(iter(data.models))
    rows = []
    for b in data.behaviors:
        r = next(r for r in metrics["pooled"] if r["model"] == first and r["behavior"] == b and r["stage"] == "raw")
        seconds = sum(int((data.labels[v].matrix[:, data.behaviors.index(b)] == 1).sum()) / data.fps[v]
                      for v in test_videos)
        rows.append([b, r["n_frames"], r["n_positive"], r["prevalence"], r["n_true_bouts"],
                     seconds / r["n_true_bouts"] if r["n_true_bouts"] else float("nan")])
    doc.table(["behaviour", "annotated test frames", "positive frames", "prevalence",
               "annotated bouts", "mean bout (s)"], rows,
              "Prevalence of each behaviour among the annotated frames of the test videos: the "
              "precision a random guess would reach, the baseline for PR-AUC.")


def _section_results(doc: Document, data: RunData, metrics: dict[str, Any]) -> None:
    names = list(data.models)
    pooled = {(r["model"], r["behavior"], r["stage"]): r for r in metrics["pooled"]}
    ms = {(r["model"], r["behavior"], r["stage"], r["fold"]): r for r in metrics["mean_std"]}
    doc.heading(3, "PR-AUC at a glance")
    rows = []
    for n in names:
        vals = [pooled[(n, b, "raw")]["pr_auc"] for b in data.behaviors]
        finite = [v for v in vals if math.isfinite(v)]
        rows.append([display_name(n), *vals, float(np.mean(finite)) if finite else float("nan")])
    doc.table(["model", *data.behaviors, "mean"], rows,
              "Pooled PR-AUC (average precision) on all test frames: 1 is perfect, the prevalence "
              "above is chance.")
    groups = (("raw: threshold chosen on validation videos",
               (("binary accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
                ("PR-AUC", "pr_auc"), ("F1", "f1"), ("bout F1", "bout_f1")), "raw"),
              ("post-processed: threshold + gap closing + minimum bout length (chosen on validation)",
               (("binary accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"),
                ("F1", "f1"), ("bout F1", "bout_f1"), ("bout count error", "bout_count_error"),
                ("duration error (s)", "bout_duration_error_s")), "post"))
    for b in data.behaviors:
        doc.heading(3, b)
        rows = []
        for title, metrics_, stage in groups:
            rows.append(Group(title))
            for label, key in metrics_:
                values = [pooled[(n, b, stage)][key] for n in names]
                finite = [v for v in values if math.isfinite(v)]
                signed = key in ("bout_count_error", "bout_duration_error_s")  # best: closest to 0
                top = (min(abs(v) for v in finite) if signed else max(finite)) if len(finite) > 1 else None
                rows.append([label, *[_value_cell(v, ms[(n, b, stage, "mean")][key], ms[(n, b, stage, "std")][key],
                                                  best=top is not None and (abs(v) if signed else v) == top,
                                                  n=(ms[(n, b, stage, "n")][key], len(data.folds)))
                                      for n, v in zip(names, values, strict=True)]])
        doc.table(["metric", *map(display_name, names)], rows)
    doc.para(f"Each cell: the pooled value (all test frames of the {len(data.folds)} folds together; "
             "bold: the best model) and below it the mean ± standard deviation over folds (over the "
             "folds where it is defined: \", 2 of 3 folds\" says one was not). Bout F1: "
             "a predicted bout matches an annotated one when their intersection over union is at "
             "least 0.5. Count and duration errors are predicted minus annotated, summed over test "
             "videos. " + NAN_NOTE, cls="caption")


def _section_thesis(doc: Document, data: RunData, metrics: dict[str, Any]) -> None:
    if not THESIS_FIGURES:
        doc.para("The thesis's published test figures are not included in this version of "
                 "mouse-pipeline, so there is nothing to set beside ours here (none are invented).",
                 cls="note")
        return
    pooled = {(r["model"], r["behavior"]): r for r in metrics["pooled"] if r["stage"] == "raw"}
    keys = (("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"), ("PR-AUC", "pr_auc"))
    rows = []
    for thesis_model, per in THESIS_FIGURES.items():
        ours_name = THESIS_MODEL_NAMES.get(thesis_model, "")
        for b, values in per.items():
            ours = pooled.get((ours_name, b))
            cells: list[Any] = [thesis_model, ours_name if ours else "not in this run", b]
            for _, k in keys:
                cells += [values.get(k, float("nan")), ours[k] if ours else None]
            rows.append(cells)
    header = ["thesis model", "our model", "behaviour"]
    for label, _ in keys:
        header += [f"{label} thesis", f"{label} ours"]
    doc.para(f"Thesis figures: {THESIS_LABEL}. They come from the final evaluation cells of the "
             "thesis code's notebooks: 5 test videos (33,000 frames) that also served for early "
             "stopping (so optimistic), threshold 0.5, PR-AUC as Keras's interpolated AUC. Ours: "
             "pooled out-of-fold test frames of this run, validation threshold. Set them side by "
             "side for orientation, not number for number.", cls="note")
    doc.table(header, rows, f"Thesis columns: {THESIS_LABEL}. “–” in our columns: that model or "
              "behaviour is not part of this run.")


def _num(value: float, digits: int, missing: str = "not recorded") -> Cell:
    text = _fmt(value, digits) if math.isfinite(value) else missing
    return Cell(html.escape(text), text)


def _section_cost(doc: Document, data: RunData, cost: tuple[list[dict], list[dict]]) -> None:
    backbones, models = cost
    rows = [[r["backbone"], r["weights"] or "not recorded", _num(r["extract_frames_per_s"], 1),
             Cell(f"{r['videos_recorded']} of {r['videos']}", f"{r['videos_recorded']} of {r['videos']}")]
            for r in backbones]
    doc.table(["backbone", "weights", "extraction frames/s", "videos with a record"], rows,
              "Stage 1: frames per second of the frozen CNN over this run's videos, as recorded in "
              "the cache (mean over videos); \"not recorded\" where the cache holds no timing.")
    def chance(r: dict) -> Cell:
        lo, hi = r["boundary_jump_chance_low"], r["boundary_jump_chance_high"]
        text = f"{lo:.2f}-{hi:.2f}" if math.isfinite(lo) and math.isfinite(hi) else "not computed"
        return Cell(text, text)

    rows = [[display_name(r["model"]), _num(r["train_minutes"], 2), _num(r["inference_frames_per_s"], 1),
             _num(r["boundary_jump_ratio"], 2, "not computed"), chance(r)] for r in models]
    doc.table(["model", "training minutes (all folds)", "inference frames/s", "boundary jump ratio",
               "same, edges moved off the grid (chance)"], rows,
              "Stage 2: total fit time over all folds (every hyperparameter trial), and sequence-model "
              "inference speed on test videos (the ensemble: its members' total time, and their "
              "inference one after the other). "
              "Boundary jump ratio: the mean frame-to-frame change of the predicted probabilities "
              "where a prediction window starts or ends, divided by the mean change elsewhere, pooled "
              "over the test videos. About 1 means predictions do not depend on where windows happen "
              "to start; the thesis code's predictions show about 19 (a jump at every window edge). "
              "The last column is the same ratio with every edge moved 1 to stride-1 frames, where "
              "no window starts: the spread that chance alone gives. A ratio near that spread, "
              "not far above it, shows no edge effect.")


_VALIDATION_SUMMARY = {
    "videos": lambda t: f", {t.folds.n_val} validation video(s) per fold",
    "inner_folds": lambda t: f", validated by {t.inner_folds.k} inner folds over the training videos, then refitted",
    "blocks": lambda t: (f", validated on one block (1/{t.blocks.k}) of each training video"
                         + (", then refitted" if t.blocks.refit else "")),
}
_VALIDATION_NOTE = {
    "videos": "validation videos taken from the training side",
    "inner_folds": "inner out-of-fold predictions of the training videos (then a refit on all of them)",
    "blocks": "contiguous validation blocks of the training videos, a window away from their training frames",
}


def _validation_text(f: Fold) -> str:
    """What validated fold ``f``: its videos, its inner groups, or its blocks."""
    if f.validation == "inner_folds":
        return " | ".join(", ".join(g) for g in f.inner)
    if f.validation == "blocks":
        return ", ".join(f"{v} [{a}, {b})" for v, a, b in f.blocks)
    return ", ".join(f.val)


def _auto_choices(data: RunData) -> dict[str, dict[int, str]]:
    """Per ``auto`` model, the kind each fold kept on validation."""
    return {name: {fr.fold.index: str(fr.history.get("kind", "?")) for fr in results}
            for name, results in data.models.items() if name.endswith("/auto")}


def _section_folds(doc: Document, data: RunData) -> None:
    rows = []
    autos = _auto_choices(data)
    for f in data.folds:
        n = sum(int(data.labels[v].n_frames) for v in f.test)
        texts = [", ".join(f.train), _validation_text(f), ", ".join(f.test)]
        rows.append([f.index, *(Cell(html.escape(t), _md_text(t), "names") for t in texts), n,
                     *(choices.get(f.index, "–") for choices in autos.values())])
    what = {"videos": "validation videos", "inner_folds": "inner folds (groups held out in turn)",
            "blocks": "validation blocks [start, stop) frames"}[data.cfg.train.validation]
    doc.table(["fold", "training videos", f"{what} (early stopping, thresholds)",
               "test videos (scored)", "test frames", *(f"{name} chose" for name in autos)], rows,
              "Splits by whole video (folds.json): a video is never on two sides of a fold."
              + (" \"auto chose\": the model kind whose trial scored best on the fold's validation"
                 + (" (here: on its training videos held out in turn, train.auto.select: inner_videos)."
                    if data.cfg.train.auto.select == "inner_videos" else ".") if autos else ""))


SECTIONS = (("results", "Results per behaviour (thesis layout)"),
            ("thesis", "The thesis's published test figures beside ours"),
            ("pr", "Precision-recall curves"), ("confusion", "Confusion matrices"),
            ("ethograms", "Ethograms of test videos"), ("training", "Training curves"),
            ("cost", "Computational cost"), ("folds", "Folds"))


def build_document(data: RunData, metrics: dict[str, Any], cost: tuple[list[dict], list[dict]]) -> Document:
    """The whole report (text, tables and figures) for a run whose metrics are computed."""
    doc = Document()
    doc.heading(1, f"Behaviour recognition report: {data.run.name}")
    doc.para(f"Written {_dt.datetime.now():%Y-%m-%d %H:%M} by mouse-pipeline {__version__} from the "
             f"run folder {data.run}.", cls="meta")
    _section_header(doc, data, metrics)
    doc.html.append("<nav><ol>" + "".join(f'<li><a href="#{k}">{html.escape(t)}</a></li>'
                                          for k, t in SECTIONS) + "</ol></nav>")
    titles = dict(SECTIONS)
    pooled = metrics["pooled"]

    doc.heading(2, titles["results"], "results")
    _section_results(doc, data, metrics)

    doc.heading(2, titles["thesis"], "thesis")
    _section_thesis(doc, data, metrics)

    doc.heading(2, titles["pr"], "pr")
    doc.figure(png_bytes(fig_pr_curves(data, pooled)), "pr_curves.png",
               "Precision-recall curves on all out-of-fold test frames, one panel per behaviour, every "
               "model overlaid (the ensemble dashed). AP in the legend is the average precision, the "
               "PR-AUC of the tables. The dotted line is chance: a random guess has precision equal "
               "to the prevalence. Curves further up and right are better.")

    doc.heading(2, titles["confusion"], "confusion")
    doc.figure(png_bytes(fig_confusion(data, pooled)), "confusion.png",
               "Confusion matrices on all test frames after post-processing, a row of panels per "
               "model and a column per behaviour. Rows: the annotation; columns: the prediction. "
               "Each cell: number of frames and percentage of its row (so the bottom-right cell is "
               "the recall, the top-right the share of absent frames wrongly called present).")

    doc.heading(2, titles["ethograms"], "ethograms")
    test_videos = [v for f in data.folds for v in f.test]
    if len(test_videos) > MAX_ETHOGRAMS:
        doc.para(f"The first {MAX_ETHOGRAMS} of {len(test_videos)} test videos are shown.")
    for vid in test_videos[:MAX_ETHOGRAMS]:
        doc.figure(png_bytes(fig_ethogram(data, vid)), f"ethogram_{sanitize_id(vid)}.png",
                   f"Ethogram of test video {vid} (held out by its fold): for each behaviour, the "
                   "annotated bouts on the first row, then the post-processed bouts each model "
                   "predicted; time in seconds. Frames not annotated are drawn as absent.")

    doc.heading(2, titles["training"], "training")
    for name in data.models:
        if name == ENSEMBLE:
            continue
        doc.figure(png_bytes(fig_training(data, name)), f"training_{sanitize_id(name.replace('/', '_'))}.png",
                   f"Training of {display_name(name)}, a line per fold: loss on the training windows (left) and mean "
                   "PR-AUC over behaviours on the fold's validation videos after each epoch (right). "
                   "The dot marks the epoch kept: early stopping watches validation videos, never test "
                   "videos.")
    if ENSEMBLE in data.models:
        _ensemble_weights(doc, data)

    doc.heading(2, titles["cost"], "cost")
    _section_cost(doc, data, cost)

    doc.heading(2, titles["folds"], "folds")
    _section_folds(doc, data)
    return doc




def _ensemble_weights(doc: Document, data: RunData) -> None:
    """Per fold and behaviour, the weight of each member of the ensemble."""
    names = data.ensemble_members
    rows = [[f"{fr.fold.index}", b, fr.meta["validation_positives"][b], *(fr.meta["weights"][b][n] for n in names)]
            for fr in data.models[ENSEMBLE] for b in data.behaviors]
    doc.table(["fold", "behaviour", "positive validation frames", *map(display_name, names)], rows,
              "The ensemble is not trained: per fold and behaviour it is the weighted mean of its members' "
              "probabilities, the weights chosen on the fold's validation probabilities by greedy forward "
              "selection (a member with weight 0 takes no part). Equal weights where the validation "
              "frames had no positive (or no negative) frame of the behaviour to choose by. Weights chosen "
              "on the frames of a few bouts are a guess: validation frames cut from the training videos "
              "score the members that stopped early on them above what they score on a new video, so "
              "compare the ensemble's cross-validated scores with the best single model's before "
              "predicting with it.", digits=2)
