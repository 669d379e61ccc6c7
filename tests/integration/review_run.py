"""A tiny synthetic run for the review tests, built without TensorFlow.

Three synthetic videos with their labels (one video's first frames not annotated), and a
run folder written through :mod:`mouse_pipeline.runs` as ``train`` writes it: config,
recorded videos, leave-one-video-out folds, and per fold out-of-fold probabilities (the
truth blurred with noise) and post-processing records. A fourth video has no labels
and no predictions (a video to annotate from scratch).
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mouse_pipeline.annotations import Labels, read_labels, write_labels_csv
from mouse_pipeline.config import Config
from mouse_pipeline.folds import make_folds
from mouse_pipeline.runs import RunFolder
from mouse_pipeline.synthetic import generate_dataset

BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")
FRAMES, FPS, SIZE = 90, 10.0, 64
UNANNOTATED = 12  # the first frames of the second video are not annotated
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


class ReviewRun:
    """The run folder, its data and the extra video (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.data, self.extra, self.run = self.root / "data", self.root / "extra", self.root / "run"
        self.ids = generate_dataset(self.data, n_videos=3, n_frames=FRAMES, size=SIZE, fps=FPS, seed=5)
        generate_dataset(self.extra, n_videos=1, n_frames=40, size=SIZE, fps=FPS, seed=6, prefix="fresh")
        self.labels = self.data / "labels"
        second = self.labels / f"{self.ids[1]}.csv"
        y = read_labels(second, "thesis", BEHAVIORS).matrix.copy()
        y[:UNANNOTATED] = -1
        write_labels_csv(second, Labels(BEHAVIORS, y))
        self.truth = {v: read_labels(self.labels / f"{v}.csv", "thesis", BEHAVIORS).matrix for v in self.ids}
        self._write_run()

    def _write_run(self) -> None:
        rng = np.random.default_rng(0)
        cfg = Config().replace(**{
            "data.videos": str(self.data / "videos"), "data.labels": str(self.labels), "data.fps": FPS,
            "data.behaviors": list(BEHAVIORS), "data.crop.mode": "none",
            "extract.cache": str(self.root / "cache"), "extract.backbones": ["resnet50v2"],
            "train.models": ["lstm"], "train.run": str(self.run)})
        folder = RunFolder(self.run)
        folder.write_config(cfg)
        folder.record_videos({v: {"video": str(self.data / "videos" / f"{v}.mp4"),
                                  "labels": str(self.labels / f"{v}.csv"), "fps": FPS} for v in self.ids})
        folds = make_folds(self.ids, "leave_one_video_out", n_val=1, seed=0)
        folder.write_folds(folds)
        self.probs = {}
        for fold in folds:
            probs = {}
            for v in (*fold.test, *fold.val):
                truth = np.where(self.truth[v] == 1, 0.7, 0.2)
                p = np.clip(truth + rng.normal(0, 0.2, truth.shape), 0, 1).astype(np.float32)
                probs[v] = p
            self.probs.update({v: probs[v] for v in fold.test})
            with folder.fold_writer("resnet50v2", "lstm", fold.index) as writer:
                writer.write_probs(list(BEHAVIORS), {"test": {v: probs[v] for v in fold.test},
                                                     "val": {v: probs[v] for v in fold.val}})
                post = {b: {"threshold": 0.5, "max_gap": 1, "min_len": 2} for b in BEHAVIORS}
                writer.write_records(post, {}, {}, {**fold.to_dict(), "window": 32, "inference_stride": 8})


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_or_skip():
    """The Chromium binary; pytest.skip without it, except in CI (``CI=true``), where it fails."""
    import pytest

    found = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail("CI=true but no chromium: .ci/run installs Debian's chromium; the browser test must run in CI")
    pytest.skip("no chromium here (apt-get install chromium); CI installs it and runs this test")


@contextlib.contextmanager
def review_process(*args: str, env_extra: dict | None = None):
    """``mouse-pipeline review ARGS --no-browser`` as a subprocess; yields (process, URL)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                         os.environ.get("PYTHONPATH", "")]),
           **(env_extra or {})}
    cmd = [sys.executable, "-c", "from stages.cli import main; main()", "review", *args, "--no-browser", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if " at http" in line:
                url = line.split(" at ", 1)[1].strip()
        if url is None:
            proc.kill()
            raise AssertionError(f"review did not print its URL: {proc.stderr.read()}")
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
