"""Score any per-frame predictions file against labels (``mouse-pipeline score``).

For labs comparing tools: another program's probabilities, or a second annotator's 0/1
labels, scored with the same per-frame and bout metrics as the project's own report
(frames not annotated are left out, and predicted bouts there ignored).

The predictions file is a CSV (or tab-separated) file in UTF-8 with a header and one row
per frame; columns not scored are ignored. ``columns`` maps behaviours to prediction
columns; without it, columns named like the behaviours (or ``p_<behaviour>``) are used.
A column used twice in the header is refused, as is a file without data rows.

Bout durations are in seconds at the video's frame rate: ``fps`` when given, else the
predictions file's ``time_s`` column (evenly spaced: each time within a tenth of a frame
of ``time_s[0] + i / fps``); when both are given they must agree, and with neither the
file is refused rather than a rate assumed. The label file may be in any format training
reads (:data:`mouse_pipeline.annotations.FORMATS`; BORIS files are turned into frames at
that frame rate, over the predictions' number of frames).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .annotations import label_behaviors, read_labels, read_rows
from .errors import InputError
from .fileio import atomic_open
from .metrics import binary_metrics, bout_metrics

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("behavior", "column", "n_frames", "prevalence", "accuracy", "precision", "recall",
                 "f1", "pr_auc", "roc_auc", "tp", "fp", "tn", "fn", "bout_f1", "bout_duration_error_s")
TIME_COLUMN = "time_s"
#: How far (in frames) a ``time_s`` value may lie from an even frame grid.
TIME_TOLERANCE_FRAMES = 0.1


def parse_mapping(text: str | None, option: str) -> dict[str, str]:
    """``a=b,c=d`` -> {'a': 'b', 'c': 'd'}; InputError naming the option when malformed."""
    if not text:
        return {}
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise InputError(f"{option} {text!r}: expected name=column pairs separated by commas, "
                             f"e.g. grooming=g_prediction; got {item!r}")
        out[key.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class PredictionTable:
    """A predictions file read as text: its header and its data rows (line number, cells)."""

    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]

    def column_index(self, name: str) -> int:
        """Position of a column; InputError when it is absent or in the header twice."""
        hits = [i for i, h in enumerate(self.header) if h == name]
        if not hits:
            raise InputError(f"{self.path}: no column {name!r}; columns found: "
                             f"{', '.join(h for h in self.header if h)}; map them with --columns")
        if len(hits) > 1:
            raise InputError(f"{self.path}: column {name!r} appears {len(hits)} times in the header "
                             f"(columns {', '.join(str(i + 1) for i in hits)}); rename or remove the "
                             "copies so that it is clear which one to score")
        return hits[0]

    def floats(self, name: str, expected: str, low: float = -math.inf, high: float = math.inf) -> np.ndarray:
        """A column as floats in ``[low, high]``; InputError naming the line otherwise."""
        i = self.column_index(name)
        out = np.empty(len(self.rows), dtype=np.float64)
        for k, (line_no, cells) in enumerate(self.rows):
            cell = cells[i] if i < len(cells) else ""
            try:
                v = float(cell)
            except ValueError:
                v = math.nan
            if not math.isfinite(v) or v < low or v > high:
                raise InputError(f"{self.path}: line {line_no}, column {name!r}: expected "
                                 f"{expected}, got {cell!r}")
            out[k] = v
        return out


def read_predictions(path: Path) -> PredictionTable:
    """The header and non-blank data rows of a predictions file (InputError when it has none)."""
    rows = read_rows(Path(path), "predictions file")
    data = [(line_no, cells) for line_no, cells in rows[1:] if any(cells)]
    if not data:
        raise InputError(f"{path}: the predictions file has a header but no data rows; "
                         "give one row per frame")
    return PredictionTable(Path(path), rows[0][1], data)


def frame_rate(table: PredictionTable, fps: float | None) -> tuple[float, str]:
    """The frame rate durations are measured at, and where it came from.

    ``fps`` when given, else the ``time_s`` column; when both exist they must agree
    (every ``time_s`` within :data:`TIME_TOLERANCE_FRAMES` of ``time_s[0] + i / fps``).
    InputError when neither gives a rate, or the two disagree.
    """
    path, n = table.path, len(table.rows)
    if TIME_COLUMN not in table.header:
        if fps is None:
            raise InputError(f"{path}: no {TIME_COLUMN} column, so the frame rate is unknown; pass "
                             "--fps (the video's frames per second) to have bout durations in seconds")
        return float(fps), "--fps"
    times = table.floats(TIME_COLUMN, "a time in seconds")
    if fps is None and n < 2:
        raise InputError(f"{path}: one row of {TIME_COLUMN} gives no frame rate; pass --fps")
    step = (times[-1] - times[0]) / (n - 1) if n > 1 else 1.0 / float(fps)
    if not step > 0:
        raise InputError(f"{path}: {TIME_COLUMN} does not increase ({times[0]:g} s on line "
                         f"{table.rows[0][0]}, {times[-1]:g} s on line {table.rows[-1][0]}); fix the "
                         f"column, or remove it and pass --fps")
    rate = float(fps) if fps is not None else 1.0 / step
    expected = times[0] + np.arange(n) / rate
    k = int(np.argmax(np.abs(times - expected)))
    if abs(times[k] - expected[k]) > TIME_TOLERANCE_FRAMES / rate:
        line = f"{path}: line {table.rows[k][0]}, {TIME_COLUMN} {times[k]:g} s where {expected[k]:g} s"
        if fps is not None:
            raise InputError(f"{line} was expected at --fps {rate:g} (the column says about "
                             f"{1.0 / step:g} fps); pass the video's true frame rate, or leave --fps out")
        raise InputError(f"{line} was expected at an even {rate:g} fps; the rows are not evenly "
                         "spaced frames: give one row per frame, or remove the column and pass --fps")
    return rate, "--fps, matching the time_s column" if fps is not None else "the time_s column"


def score_arrays(y_true: np.ndarray, probs: np.ndarray, behaviors: list[str], threshold: float,
                 fps: float | None = None, columns: list[str] | None = None) -> list[dict]:
    """One row of frame and bout metrics per behaviour (unlabelled frames excluded).

    As in the report, predicted bouts on frames not annotated (``-1``) are ignored.
    """
    rows = []
    for j, b in enumerate(behaviors):
        m = binary_metrics(y_true[:, j], probs[:, j], threshold)
        pred = np.where(y_true[:, j] == -1, 0, probs[:, j] >= threshold).astype(np.int8)
        bouts = bout_metrics(np.where(y_true[:, j] == 1, 1, 0), pred, fps=fps)
        rows.append({"behavior": b, "column": (columns or behaviors)[j], **m,
                     **{f"bout_{k}": v for k, v in bouts.items()}})
    return rows


def score_files(labels: Path, predictions: Path, columns: str | None = None,
                label_columns: str | None = None, label_format: str = "thesis",
                threshold: float = 0.5, csv_out: Path | None = None,
                fps: float | None = None) -> list[dict]:
    """Score a predictions file against a label file; optionally write the table as CSV.

    Each row also holds the ``fps`` its bout durations were measured at and ``fps_source``,
    where that came from (see the module docstring). A scored column equal to the labels
    is warned about (a copy of the labels scores perfectly).
    """
    mapping = parse_mapping(columns, "--columns")
    renames = parse_mapping(label_columns, "--label-columns")
    table = read_predictions(predictions)
    if mapping:
        behaviors = list(mapping)
    elif renames:
        behaviors = list(dict.fromkeys(renames.values()))
    else:
        behaviors = label_behaviors(labels, label_format)
        if not behaviors:
            raise InputError(f"{labels}: no behaviour found in the label file; check "
                             "--label-format, or name the behaviours with --columns")
    if not mapping:
        mapping = {b: (f"p_{b}" if f"p_{b}" in table.header else b) for b in behaviors}
        both = [b for b in behaviors if mapping[b] == f"p_{b}" and b in table.header]
        if both:  # predict's files: probabilities and, beside them, its post-processed 0/1 labels
            log.info("%s: scoring the probabilities %s at threshold %g; the 0/1 columns %s beside them "
                     "(predict's labels, at its thresholds and post-processing) are scored with --columns %s",
                     predictions, ", ".join(f"p_{b}" for b in both), threshold, ", ".join(both),
                     ",".join(f"{b}={b}" for b in both))
    cols = [mapping[b] for b in behaviors]
    probs = np.stack([table.floats(c, "a probability or 0/1", 0.0, 1.0) for c in cols], axis=1)
    rate, source = frame_rate(table, fps)
    lab = read_labels(labels, label_format, tuple(behaviors), columns=renames or None,
                      fps=rate, n_frames=probs.shape[0])
    if probs.shape[0] != lab.n_frames:
        raise InputError(f"{predictions}: {probs.shape[0]} frames of predictions but {labels} has "
                         f"{lab.n_frames}; both must cover the same frames")
    _warn_if_copies(predictions, lab.matrix, probs, cols)
    rows = [{**r, "fps": rate, "fps_source": source}
            for r in score_arrays(lab.matrix, probs, behaviors, threshold, fps=rate, columns=cols)]
    if csv_out is not None:
        write_rows_csv(csv_out, rows)
    return rows


def _warn_if_copies(path: Path, y_true: np.ndarray, probs: np.ndarray, cols: list[str]) -> None:
    """Warn when a scored column equals the labels on every annotated frame: a perfect
    score is then most likely the labels scored against a copy of themselves (the thesis
    fork's results file holds both)."""
    for j, c in enumerate(cols):
        keep = y_true[:, j] != -1
        if keep.any() and np.array_equal(probs[keep, j], y_true[keep, j]):
            log.warning("%s: column %r equals the labels on every annotated frame (a copy of the "
                        "labels?); name the prediction columns with --columns", path, c)


def write_rows_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    """Rows of dicts as a CSV that pandas reads, written atomically (CRLF line ends).

    ``fieldnames`` fixes the header (needed when ``rows`` may be empty). Missing values
    (None, NaN) are empty cells (:func:`csv_cell`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = fieldnames or list(dict.fromkeys(k for r in rows for k in r))
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows({k: csv_cell(v) for k, v in r.items()} for r in rows)


def csv_cell(value):
    """A value as a CSV cell: missing values (None, NaN) are empty, so spreadsheets and
    pandas read them as missing; everything else as it is."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return ""
    return value


def format_table(rows: list[dict], columns: tuple[str, ...] = TABLE_COLUMNS) -> str:
    """A plain-text table of metric rows for the terminal."""
    def cell(v) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}"
        return str(v)

    cols = [c for c in columns if any(c in r for r in rows)]
    table = [[c for c in cols]] + [[cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths, strict=False)))
                     for row in table)
