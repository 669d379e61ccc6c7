"""Figures shared by the report and predict (matplotlib, headless Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metrics import bouts_from_binary  # noqa: E402

# One colour per behaviour, colour-blind safe (Okabe-Ito).
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#0072B2", "#D55E00", "#F0E442", "#000000")


def ethogram_figure(tracks: list[tuple[str, np.ndarray, int]], fps: float, title: str) -> plt.Figure:
    """Ethogram: one row per track, a bar for every bout, time in seconds.

    Parameters
    ----------
    tracks
        (row label, 0/1 array over frames, behaviour index for the colour), top to bottom.
    fps
        Frames per second, for the time axis.
    title
        Figure title.
    """
    n = max((len(b) for _, b, _ in tracks), default=0)
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(tracks) + 1.2))
    for row, (_, binary, colour) in enumerate(tracks):
        spans = [(s / fps, (e - s + 1) / fps) for s, e in bouts_from_binary(np.asarray(binary))]
        ax.broken_barh(spans, (row - 0.38, 0.76), color=PALETTE[colour % len(PALETTE)])
    ax.set_yticks(range(len(tracks)), [label for label, _, _ in tracks])
    ax.set_ylim(len(tracks) - 0.5, -0.5)
    ax.set_xlim(0, n / fps if fps else n)
    ax.set_xlabel("time (s)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def save_png(fig: plt.Figure, path: Path, dpi: int = 110) -> None:
    """Save and close a figure (written beside, then renamed into place)."""
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)


def png_bytes(fig: plt.Figure, dpi: int = 110) -> bytes:
    """PNG bytes of a figure (for embedding in HTML); closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
