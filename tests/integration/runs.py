"""Helpers of the run-folder tests: a tiny extracted dataset, and the CLI as a user runs it.

Everything goes through ``mouse-pipeline`` commands (in-process, click's runner, so
TensorFlow starts once): these tests must not depend on how stage 2 is built inside.
"""

import csv
import shutil

from click.testing import CliRunner

from mouse_pipeline.synthetic import generate_dataset
from tests.integration import random_extract_args

BACKBONE = "resnet50v2"
BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")  # configs/demo.yaml's
NEW_FRAMES = 60


def cli(*args):
    """Run ``mouse-pipeline ARGS`` in-process; the click Result (``stdout``, ``stderr`` apart)."""
    from stages.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def error_line(result):
    """The single ``error: ...`` line a user error prints on stderr (exit code 2)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def cli_ok(*args):
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


class Dataset:
    """Four labelled synthetic videos (every behaviour in each) and one new video, all
    extracted into ``cache`` (untrained ResNet50V2 at 32 px, whole frames)."""

    def __init__(self, root):
        self.data, self.new, self.cache = root / "data", root / "new", root / "cache"
        generate_dataset(self.data, n_videos=4, n_frames=80, size=32, fps=5, seed=11)
        generate_dataset(self.new, n_videos=1, n_frames=NEW_FRAMES, size=32, fps=5, seed=12,
                         prefix="new")
        for videos in (self.data, self.new):  # predict then finds the new video cached
            cli_ok(*random_extract_args(videos, self.cache))

    def train(self, run, *sets):
        """Train a tiny run of the demo config with ``--final`` into ``run``; ``sets`` are
        further ``KEY=VALUE`` overrides."""
        base = {"data.videos": self.data / "videos", "data.labels": self.data / "labels",
                "data.crop.mode": "none", "extract.cache": self.cache,
                "extract.backbones": f"[{BACKBONE}]", "extract.weights": "random",
                "extract.input_size": 32, "train.run": run, "train.epochs": 2,
                "train.window.length": 32, "train.window.stride": 16, "train.lstm.units": 8,
                "train.tcn.filters": 8, "train.tcn.dilations": "[1, 2]",
                "train.folds.scheme": "group_kfold", "train.folds.k": 2}
        pairs = [f"{k}={v}" for k, v in base.items()] + list(sets)
        cli_ok("train", "--config", "configs/demo.yaml", "--quiet", "--final",
               *[arg for pair in pairs for arg in ("--set", pair)])
        return run

    def predict(self, run, out, *extra):
        """``predict`` the new video with ``run`` into ``out`` (``extra``: more options)."""
        return cli("predict", "--run", run, "--videos", self.new / "videos", "--out", out,
                   "--quiet", *extra)


def copy_run(run, dest):
    """A copy of a run folder to damage or edit (the original serves the other tests)."""
    shutil.copytree(run, dest)
    return dest


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
