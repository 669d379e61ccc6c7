"""The evaluation a scientist reads: metrics tables, figures, report.html and report.md.

:func:`write_report` reads only a run folder (through :mod:`mouse_pipeline.runs`, which owns
its layout) and the label files its config names. Every number is computed on out-of-fold
*test* frames (each fold's test probabilities), frames not annotated (``-1``) left out; thresholds,
early stopping and post-processing come from each fold's validation videos.

Models of a run are the ``<backbone>/<model>`` folders holding ``fold_<i>`` folders
(``final`` and ``*.partial`` are ignored). A model with fewer fold folders than
``folds.json`` has folds is incomplete: it is named in the report and left out of it.
When two or more models are complete an ``ensemble`` is added: per fold and behaviour,
the weighted mean of their probabilities, with the weights (:mod:`mouse_pipeline.ensemble`),
thresholds and post-processing chosen on the fold's *validation* probabilities (never on
test).

Written into the run folder (each file under a temporary name, then renamed):

``metrics.csv``
    One row per model x behaviour x fold x stage (``row`` = ``fold``, ``fold`` = the fold
    index), plus rows ``row`` = ``pooled`` (all test frames of all folds together, each
    fold judged with its own threshold), ``mean`` and ``std`` (over the folds where the
    metric is defined) and ``n`` (the number of those folds), whose ``fold`` is empty.
    Missing values (a metric undefined in a fold, post-processing keys of raw and
    summary rows) are empty cells. Stage ``raw``: the validation threshold; ``post``: threshold,
    gap closing and minimum bout length. Columns: :data:`CSV_COLUMNS`. Bout metrics are
    summed over videos (a bout never spans two videos); a bout is a run of annotated
    present frames, and predictions on frames not annotated are ignored. PR-AUC and
    ROC-AUC rank the raw probabilities, so they are the same for both stages. Per-fold
    rows also hold the fold's ``threshold`` (and, for ``post``, ``max_gap`` and ``min_len``).
``metrics.json``
    ``{"version": 1, "run", "models", "behaviors", "incomplete_models": {name: folds
    done}, "ensemble": {"members", "postprocess": [{fold, behavior, threshold, max_gap,
    min_len, weights: {member: weight}}]} or null, "pooled": [rows], "folds": [rows], "mean_std": [rows], "cost":
    {"backbones": [...], "models": [...]}}``; rows are the CSV rows as objects (``NaN`` as
    ``null``; ``fold`` is the fold index in ``folds`` rows and, as in version 1, the
    ``row`` kind in the others).
``report.html``
    Self-contained (figures embedded as base64 PNG, inline CSS, no script).
``report.md`` and ``figures/``
    The same report as Markdown, figures as PNG files beside it.

Modules: :mod:`.data` reads a run folder back (and builds the ensemble), :mod:`.scores`
turns it into metric and cost rows, :mod:`.figures` draws, :mod:`.document` renders HTML
and Markdown, :mod:`.sections` decides what the report says and in which order.
"""


from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib

from ..fileio import write_bytes
from ..runs import FoldResult, RunFolder
from ..scoring import write_rows_csv
from .data import ENSEMBLE, RunData, _video_fps, add_ensemble, load_run
from .document import _json_safe
from .scores import CSV_COLUMNS, compute_metrics, cost_rows, metrics_csv_rows, score_videos
from .sections import THESIS_FIGURES, THESIS_LABEL, THESIS_MODEL_NAMES, build_document

__all__ = ["CSV_COLUMNS", "ENSEMBLE", "THESIS_FIGURES", "THESIS_LABEL", "THESIS_MODEL_NAMES", "FoldResult",
           "RunData", "_video_fps", "add_ensemble", "compute_metrics", "cost_rows", "load_run",
           "score_videos", "write_report"]

log = logging.getLogger(__name__)


def write_report(run_dir: str | Path) -> Path:
    """Score a trained run on its out-of-fold test videos and write its report files.

    Parameters
    ----------
    run_dir
        A run folder written by ``mouse-pipeline train``.

    Returns
    -------
    pathlib.Path
        The path of ``report.html``; ``report.md``, ``figures/``, ``metrics.csv`` and
        ``metrics.json`` are written beside it (see the module docstring).

    Raises
    ------
    RunError
        The folder is not a trained run (no ``folds.json``, no complete model, missing
        probabilities) or a label file the run was trained with is gone.
    """
    data = load_run(run_dir)
    add_ensemble(data)
    metrics = compute_metrics(data)
    cost = cost_rows(data)
    run = data.run
    write_rows_csv(run / "metrics.csv", metrics_csv_rows(metrics), list(CSV_COLUMNS))
    ensemble = None
    if ENSEMBLE in data.models:
        ensemble = {"members": data.ensemble_members,
                    "postprocess": [{"fold": fr.fold.index, "behavior": b, **fr.post[b],
                                     "weights": fr.meta["weights"][b],
                                     "validation_positive_frames": fr.meta["validation_positives"][b]}
                                    for fr in data.models[ENSEMBLE] for b in data.behaviors]}
    payload = {"version": 1, "run": run.name, "models": list(data.models), "behaviors": list(data.behaviors),
               "incomplete_models": data.incomplete, "ensemble": ensemble, **metrics,
               "cost": {"backbones": cost[0], "models": cost[1]}}
    write_bytes(RunFolder(run).metrics_file, json.dumps(_json_safe(payload), indent=1, allow_nan=False).encode())
    with matplotlib.rc_context({"text.parse_math": False}):  # names with "$" stay text
        doc = build_document(data, metrics, cost)
    figures = run / "figures"
    figures.mkdir(exist_ok=True)
    for name, png in doc.figures:
        write_bytes(figures / name, png)
    write_bytes(run / "report.md", doc.render_md().encode("utf-8"))
    write_bytes(run / "report.html", doc.render_html(f"mouse-pipeline report: {run.name}").encode("utf-8"))
    log.info("report of %d model(s) on %d test videos: %s", len(data.models),
             sum(len(f.test) for f in data.folds), run / "report.html")
    return run / "report.html"

