"""Shared figures (plots.py): no import-time side effects, atomic PNG files."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mouse_pipeline import plots

PNG = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[2]


def tracks():
    a = np.zeros(50, int)
    a[5:10] = 1
    a[20:21] = 1
    b = np.zeros(50, int)
    b[30:45] = 1
    return [("annotated", a, 0), ("predicted", b, 1)]


def test_ethogram_draws_one_bar_per_bout_in_seconds():
    fig = plots.ethogram_figure(tracks(), fps=10.0, title="m1")
    (ax,) = fig.axes
    spans = [[tuple(np.round(p.get_extents().bounds, 6)) for p in c.get_paths()] for c in ax.collections]
    assert [len(s) for s in spans] == [2, 1]  # two bouts, then one
    assert ax.get_xlim() == (0.0, 5.0) and ax.get_title() == "m1"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["annotated", "predicted"]
    assert plots.png_bytes(fig).startswith(PNG)


def test_importing_and_saving_leave_the_users_matplotlib_backend_alone(tmp_path):
    code = ("import sys, matplotlib\n"
            "matplotlib.use('svg')\n"
            "import numpy as np\n"
            "from mouse_pipeline import plots\n"
            "fig = plots.ethogram_figure([('a', np.array([0, 1, 1, 0]), 0)], 2.0, 't')\n"
            f"plots.save_png(fig, {str(tmp_path / 'e.png')!r})\n"
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MPLBACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["svg", "False"]  # not switched to Agg, pyplot never imported
    assert (tmp_path / "e.png").read_bytes().startswith(PNG)


def test_save_png_is_atomic(tmp_path):
    path = tmp_path / "ethogram.png"
    plots.save_png(plots.ethogram_figure(tracks(), 10.0, "first"), path)
    first = path.read_bytes()
    assert first.startswith(PNG) and os.listdir(tmp_path) == ["ethogram.png"]

    fig = plots.ethogram_figure(tracks(), 10.0, "second")

    def fails_half_way(target, **kwargs):
        Path(target).write_bytes(PNG)  # part of a file, then the writer dies
        raise OSError(28, "No space left on device")

    fig.savefig = fails_half_way
    with pytest.raises(OSError, match="No space left"):
        plots.save_png(fig, path)
    assert path.read_bytes() == first and os.listdir(tmp_path) == ["ethogram.png"]


def test_figures_made_with_pyplot_are_closed():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert plt.fignum_exists(fig.number)
    assert plots.png_bytes(fig).startswith(PNG)
    assert not plt.fignum_exists(fig.number)
