"""Two real ``extract`` processes started together on one cache.

Extraction holds ``<cache>/<backbone>/.lock`` (locks.py) while it writes into that folder,
so the process that comes second stops with exit code 2 and one line naming the holder's
pid (it does not wait); or, if the first has already finished by the time it looks, it
finds every file up to date and writes nothing. Either way no file is written twice at
once: at the end every cache file is complete and equal to a single uninterrupted run's,
and no lock or temporary file is left.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline import devices
from mouse_pipeline.synthetic import generate_dataset
from tests.integration import random_extract_args

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IDS = ["mouse_000", "mouse_001", "mouse_002", "mouse_003"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrent")
    generate_dataset(root, n_videos=4, n_frames=150, size=64, fps=5, seed=8)
    return root


def extract_args(root: Path, cache: Path) -> list[str]:
    return random_extract_args(root, cache, "resnet50v2", 64, "--set", "extract.batch_size=16")


def complete_files(folder: Path) -> dict[str, np.ndarray]:
    """Every file with a final name, each checked whole."""
    out = {}
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as f:
            emb = f["embeddings"][()]
            assert emb.shape == (f.attrs["n_frames"], f.attrs["dim"]), path
            out[path.stem] = emb
    return out


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix != ".h5")


def race(data: Path, cache: Path) -> tuple[list[subprocess.Popen], list[tuple[str, str]], set[int]]:
    """Start two extract processes at once; watch the folder until both end."""
    folder = cache / "resnet50v2"
    procs = [subprocess.Popen([sys.executable, "-m", "stages.cli", *extract_args(data, cache)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    holders: set[int] = set()
    deadline = time.monotonic() + 240
    while any(p.poll() is None for p in procs):
        assert time.monotonic() < deadline, "extract processes did not finish"
        try:
            holders.add(json.loads((folder / ".lock").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pass  # no lock now, or caught while being written
        if folder.is_dir():
            complete_files(folder)  # whatever has a final name is whole, at every moment
        time.sleep(0.5)
    outputs = [p.communicate() for p in procs]
    return procs, outputs, holders


def test_two_extract_processes_on_one_cache(data, tmp_path, run_cli):
    reference = tmp_path / "reference"
    result = run_cli(*extract_args(data, reference))
    assert result.exit_code == 0, result.output
    ref = complete_files(reference / "resnet50v2")
    assert list(ref) == IDS

    raced = False
    for attempt in range(3):  # two processes that never overlap show nothing: try again (rare)
        cache = tmp_path / f"cache{attempt}"
        procs, outputs, holders = race(data, cache)
        codes = [p.returncode for p in procs]
        pids = [p.pid for p in procs]
        assert codes in ([0, 2], [2, 0], [0, 0]), outputs
        assert holders <= set(pids)
        for code, (out, err), pid in zip(codes, outputs, pids, strict=True):
            if code == 2:  # came second: stopped before writing anything, naming the holder
                other = pids[1 - pids.index(pid)]
                errors = [line for line in err.splitlines() if line.startswith("error")]
                folder = cache / "resnet50v2"
                assert len(errors) == 1, err
                assert re.fullmatch(rf"error: {re.escape(str(folder))} is locked by pid {other} \(started "
                                    r"[0-9T:+-]+\); wait for it or stop it \(if no such process runs, delete "
                                    rf"{re.escape(str(folder / '.lock'))}\)", errors[0]), errors[0]
                assert "Traceback" not in err
                assert out == ""
        if codes != [0, 0]:
            winner = codes.index(0)
            assert "4 video x backbone: 4 extracted, 0 up to date, 0 failed" in outputs[winner][0]
            if not devices.nvidia_driver_present():  # TensorFlow's no-driver line is filtered out
                assert "cuInit" not in outputs[winner][1], outputs[winner][1]
        else:  # one finished before the other looked: the later one found everything done
            assert sorted(re.search(r"(\d) extracted", out).group(1) for out, _ in outputs) == ["0", "4"], outputs
        got = complete_files(cache / "resnet50v2")
        assert got.keys() == ref.keys()
        for vid in ref:
            np.testing.assert_array_equal(got[vid], ref[vid])
        assert leftovers(cache / "resnet50v2") == []  # no .lock, .lock.break or temporary file
        if codes != [0, 0]:
            raced = True
            break
    assert raced, "the two processes never met at the lock in 3 attempts"

    # the loser's command, run again, finds nothing to do
    result = run_cli(*extract_args(data, cache))
    assert result.exit_code == 0 and "4 up to date" in result.output, result.output
