"""Figures shared by the report and predict, drawn without a display.

Figures are plain :class:`matplotlib.figure.Figure` objects, not pyplot's: importing this
module changes no matplotlib setting and never chooses pyplot's backend. They are drawn
with the Agg canvas when they are saved (:func:`save_png`, :func:`png_bytes`), which also
accept figures made with pyplot (and close those).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import IO

import numpy as np
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .fileio import atomic_path
from .metrics import bouts_from_binary

# One colour per behaviour, colour-blind safe (Okabe-Ito).
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#000000")


def ethogram_figure(tracks: list[tuple[str, np.ndarray, int]], fps: float, title: str) -> Figure:
    """Ethogram: one row per track, a bar for every bout, time in seconds.

    Parameters
    ----------
    tracks
        (row label, 0/1 array over frames, behaviour index for the colour), top to bottom.
    fps
        Frames per second, for the time axis.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot; save it with :func:`save_png` or :func:`png_bytes`.
    """
    n = max((len(b) for _, b, _ in tracks), default=0)
    fig = Figure(figsize=(10, 0.45 * len(tracks) + 1.2), layout="tight")
    ax = fig.subplots()
    for row, (_, binary, colour) in enumerate(tracks):
        spans = [(s / fps, (e - s + 1) / fps) for s, e in bouts_from_binary(np.asarray(binary))]
        ax.broken_barh(spans, (row - 0.38, 0.76), color=PALETTE[colour % len(PALETTE)])
    ax.set_yticks(range(len(tracks)), [label for label, _, _ in tracks])
    ax.set_ylim(len(tracks) - 0.5, -0.5)
    ax.set_xlim(0, n / fps if fps else n)
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _write_png(fig: Figure, target: str | Path | IO[bytes], dpi: int) -> None:
    """Draw a figure as PNG into a file or buffer, then close it if pyplot manages it."""
    if type(fig.canvas) is FigureCanvasBase:  # a plain Figure: draw it with Agg
        FigureCanvasAgg(fig)
    try:
        fig.savefig(target, format="png", dpi=dpi)
    finally:
        if "matplotlib.pyplot" in sys.modules:  # only pyplot can have registered it
            sys.modules["matplotlib.pyplot"].close(fig)


def save_png(fig: Figure, path: Path, dpi: int = 110) -> None:
    """Save a figure as PNG atomically (:func:`mouse_pipeline.fileio.atomic_path`) and close it."""
    with atomic_path(path) as tmp:
        _write_png(fig, tmp, dpi)


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """PNG bytes of a figure (for embedding in HTML); closes the figure."""
    buf = io.BytesIO()
    _write_png(fig, buf, dpi)
    return buf.getvalue()
