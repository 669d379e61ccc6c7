"""Kill safety: SIGKILL at random moments never leaves a partial cache file or fold.

Extraction is killed at least 20 times (seeded random moments) and restarted each time;
at the end every cache file is complete and bit-for-bit equal to an uninterrupted run's,
and no temporary file is left. Training is killed a few times and resumed; its
out-of-fold probabilities equal an uninterrupted run's.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline.synthetic import generate_dataset

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def cli(*args, env=None):
    return [sys.executable, "-m", "stages.cli", *map(str, args)]


def settings(root: Path, cache: Path, run: Path | None = None) -> list[str]:
    out = ["--config", "configs/demo.yaml", "--quiet",
           "--set", f"data.videos={root / 'videos'}", "--set", f"data.labels={root / 'labels'}",
           "--set", f"extract.cache={cache}", "--set", "extract.backbones=[resnet50v2]",
           "--set", "extract.weights=random", "--set", "data.crop.mode=none", "--set", "extract.input_size=96",
           "--set", "extract.batch_size=16"]
    if run is not None:
        out += ["--set", f"train.run={run}", "--set", "train.epochs=2", "--set", "train.models=[lstm]",
                "--set", "train.window.length=32", "--set", "train.window.stride=16",
                "--set", "train.lstm.units=8"]
    return out


def run_to_end(args) -> None:
    proc = subprocess.run(cli(*args), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def kill_repeatedly(args, n_kills: int, delays: tuple[float, float], seed: int, check) -> int:
    """Start the command, SIGKILL it after a random delay, check the folder, repeat."""
    rng = np.random.default_rng(seed)
    kills = 0
    while kills < n_kills:
        proc = subprocess.Popen(cli(*args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(*delays)))
        if proc.poll() is not None:  # finished before the kill: the work is done
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        check()
    return kills


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    generate_dataset(root, n_videos=6, n_frames=400, size=96, fps=5, seed=11)
    return root


def complete_files(cache: Path) -> dict[str, np.ndarray]:
    """Every cache file with a final name must be whole and readable."""
    out = {}
    for path in sorted((cache / "resnet50v2").glob("*.h5")):
        with h5py.File(path, "r") as f:
            emb = f["embeddings"][()]
            assert emb.shape[0] == f.attrs["n_frames"]
            out[path.stem] = emb
    return out


def test_extract_survives_20_kills_bit_for_bit(data, tmp_path):
    reference = tmp_path / "reference"
    run_to_end(["extract", *settings(data, reference)])
    ref = complete_files(reference)
    assert len(ref) == 6

    cache = tmp_path / "killed"
    kills = kill_repeatedly(["extract", *settings(data, cache)], n_kills=20, delays=(1.0, 5.0), seed=5,
                            check=lambda: complete_files(cache))
    run_to_end(["extract", *settings(data, cache)])  # finish what is left
    got = complete_files(cache)
    assert kills >= 20
    assert got.keys() == ref.keys()
    for vid in ref:
        np.testing.assert_array_equal(got[vid], ref[vid])
    leftovers = [p.name for p in (cache / "resnet50v2").iterdir() if p.name != ".lock" and p.suffix != ".h5"]
    leftovers += [p.name for p in (cache / "resnet50v2").glob("*.tmp-*")]
    assert leftovers == []
    assert not (cache / "resnet50v2" / ".lock").exists()


def test_train_resumes_after_kills_with_same_probabilities(data, tmp_path):
    cache = tmp_path / "cache"
    run_to_end(["extract", *settings(data, cache)])
    ref_run, run = tmp_path / "ref_run", tmp_path / "run"
    run_to_end(["train", *settings(data, cache, ref_run)])

    def check():
        for d in (run / "resnet50v2" / "lstm").glob("fold_*"):  # a kill may leave fold_<i>.trials.json
            if d.is_dir() and not d.name.endswith(".partial"):
                assert (d / "fold.json").is_file() and (d / "probs.h5").is_file()

    kills = kill_repeatedly(["train", *settings(data, cache, run)], n_kills=5, delays=(6.0, 14.0), seed=2,
                            check=check)
    run_to_end(["train", *settings(data, cache, run)])
    assert kills >= 1
    for i in range(6):
        a, b = (r / "resnet50v2" / "lstm" / f"fold_{i}" / "probs.h5" for r in (ref_run, run))
        with h5py.File(a) as fa, h5py.File(b) as fb:
            for vid in fa["test"]:
                np.testing.assert_array_equal(fa["test"][vid][()], fb["test"][vid][()])
    assert not list((run / "resnet50v2" / "lstm").glob("*.partial"))
    assert not list((run / "resnet50v2" / "lstm").glob("*.trials.json"))  # removed once each fold is written
