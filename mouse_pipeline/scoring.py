"""Score any per-frame predictions file against labels (``mouse-pipeline score``).

For labs comparing tools: another program's probabilities, or a second annotator's 0/1
labels, scored with the same per-frame and bout metrics as the project's own report.
The predictions file is a CSV with a header; an unnamed first column (a pandas index) is
ignored. ``columns`` maps behaviours to prediction columns; without it, columns named
like the behaviours (or ``p_<behaviour>``) are used.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np

from .annotations import read_labels
from .errors import InputError
from .fileio import atomic_open
from .metrics import binary_metrics, bout_metrics

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("behavior", "column", "n_frames", "prevalence", "accuracy", "precision", "recall",
                 "f1", "pr_auc", "roc_auc", "tp", "fp", "tn", "fn", "bout_f1")


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


def read_prediction_columns(path: Path, wanted: list[str]) -> dict[str, np.ndarray]:
    """Read the named numeric columns of a CSV; InputError naming file, row and column."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise InputError(f"{path}: the predictions file is empty") from None
        missing = [c for c in wanted if c not in header]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r}; columns found: "
                             f"{', '.join(h for h in header if h)}; map them with --columns")
        idx = [header.index(c) for c in wanted]
        values: list[list[float]] = [[] for _ in wanted]
        for line_no, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            for j, i in enumerate(idx):
                cell = row[i].strip() if i < len(row) else ""
                try:
                    v = float(cell)
                except ValueError:
                    v = math.nan
                if not math.isfinite(v) or v < 0 or v > 1:
                    raise InputError(f"{path}: line {line_no}, column {wanted[j]!r}: expected a "
                                     f"probability or 0/1, got {cell!r}")
                values[j].append(v)
    return {c: np.asarray(v, dtype=np.float64) for c, v in zip(wanted, values, strict=False)}


def score_arrays(y_true: np.ndarray, probs: np.ndarray, behaviors: list[str], threshold: float,
                 fps: float | None = None, columns: list[str] | None = None) -> list[dict]:
    """One row of frame and bout metrics per behaviour (unlabelled frames excluded)."""
    rows = []
    for j, b in enumerate(behaviors):
        m = binary_metrics(y_true[:, j], probs[:, j], threshold)
        pred = (probs[:, j] >= threshold).astype(np.int8)
        bouts = bout_metrics(np.where(y_true[:, j] == 1, 1, 0), pred, fps=fps)
        rows.append({"behavior": b, "column": (columns or behaviors)[j], **m,
                     **{f"bout_{k}": v for k, v in bouts.items()}})
    return rows


def score_files(labels: Path, predictions: Path, columns: str | None = None,
                label_columns: str | None = None, label_format: str = "thesis",
                threshold: float = 0.5, csv_out: Path | None = None) -> list[dict]:
    """Score a predictions CSV against a label file; optionally write the table as CSV."""
    mapping = parse_mapping(columns, "--columns")
    renames = parse_mapping(label_columns, "--label-columns")
    if mapping:
        behaviors = list(mapping)
    else:
        behaviors = list(dict.fromkeys(renames.values())) if renames else None
        if behaviors is None:
            with open(labels, newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), [])
            behaviors = [h.strip() for h in header if h.strip() and h.strip() != "background"]
            if label_format == "deepethogram":
                behaviors = behaviors[1:] if header and not header[0].strip() else behaviors
        with open(predictions, newline="", encoding="utf-8-sig") as fh:
            pheader = [h.strip() for h in next(csv.reader(fh), [])]
        mapping = {b: (f"p_{b}" if f"p_{b}" in pheader else b) for b in behaviors}
    lab = read_labels(labels, label_format, tuple(behaviors), columns=renames or None)
    cols = [mapping[b] for b in behaviors]
    preds = read_prediction_columns(predictions, cols)
    n_pred = len(next(iter(preds.values())))
    if n_pred != lab.n_frames:
        raise InputError(f"{predictions}: {n_pred} frames of predictions but {labels} has "
                         f"{lab.n_frames}; both must cover the same frames")
    probs = np.stack([preds[c] for c in cols], axis=1)
    rows = score_arrays(lab.matrix, probs, behaviors, threshold, columns=cols)
    if csv_out is not None:
        write_rows_csv(csv_out, rows)
    return rows


def write_rows_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    """Rows of dicts as a CSV that pandas reads, written atomically (CRLF line ends).

    ``fieldnames`` fixes the header (needed when ``rows`` may be empty).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = fieldnames or list(dict.fromkeys(k for r in rows for k in r))
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


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
