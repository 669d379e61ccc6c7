"""``--ray`` on a local Ray (2 CPUs, started once for the module): the same files as a local run.

- extraction on Ray writes cache files equal to a local extraction's (embeddings bit for
  bit, every attribute but the creation time and the measured speed), with the same
  summary, even when a worker is SIGKILLed in the middle of a video (Ray retries it), and
  its driver (a second process joining the module's Ray by address) imports no TensorFlow;
- training on Ray writes out-of-fold probabilities bit-identical to the sequential run (also
  with TPE proposing and ASHA pruning each fold's trials), and predict on Ray extracts a
  new video as a local extraction does and predicts it as a local predict does; neither
  driver imports TensorFlow (the workers fit, predict the folds' videos and the new ones);
- an unreachable address, a missing Ray and a second driver on one cache are one line, exit 2.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline.fileio import TMP_MARK
from mouse_pipeline.locks import pid_alive
from mouse_pipeline.synthetic import generate_dataset
from tests.integration import random_extract_args
from tests.integration.runs import cli, cli_ok, error_line

ray = pytest.importorskip("ray", reason="Ray is the cluster extra; make setup installs it")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BACKBONE = "mobilenet_v3_small"  # the quickest to build in each worker
#: attributes that say when and how fast a file was made, not what it holds
TIMING_ATTRS = {"created", "extract_frames_per_s"}
KILL_ENV = "MOUSE_PIPELINE_TEST_KILL_WORKER"


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (start-up costs seconds); commands reuse it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False,
             logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four labelled 32 px videos, extracted locally (the reference cache)."""
    root = tmp_path_factory.mktemp("ray_data")
    generate_dataset(root, n_videos=4, n_frames=80, size=32, fps=5, seed=11)
    out = cli_ok(*random_extract_args(root, root / "local_cache", BACKBONE))
    return root, out.stdout.splitlines()[0]


_PROBE = (
    "import json, sys\n"
    "from stages.cli import main\n"
    "code = 0\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "print(json.dumps({'code': code, 'tf': 'tensorflow' in sys.modules or 'keras' in sys.modules}))\n"
)


def run_probe(*args, env=None):
    """``mouse-pipeline ARGS`` in a new process: its report (exit code, TensorFlow imported) and
    the finished process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           **(env or {})}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


def assert_same_cache(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*.h5"))
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*.h5"))
    assert not [p for p in b.rglob("*") if TMP_MARK in p.name or p.name.startswith(".lock")]
    for rel in files:
        with h5py.File(a / rel) as x, h5py.File(b / rel) as y:
            assert list(x) == list(y) == ["embeddings"]
            assert x["embeddings"].dtype == y["embeddings"].dtype
            assert np.array_equal(x["embeddings"][()], y["embeddings"][()]), rel
            ax = {k: str(v) for k, v in x.attrs.items() if k not in TIMING_ATTRS}
            ay = {k: str(v) for k, v in y.attrs.items() if k not in TIMING_ATTRS}
            assert ax == ay, rel
            assert set(x.attrs) == set(y.attrs)


def test_extract_on_ray_equals_local_after_a_killed_worker(ray_local, data, tmp_path):
    """A second process (the driver) joins the module's Ray by its address and extracts every
    video, one of its workers SIGKILLed after the first batch of a video: that video is
    retried, the cache equals the local one, the summary is a local run's, and the driver
    never imported TensorFlow."""
    root, summary = data
    marker = tmp_path / "killed"
    report, proc = run_probe(*random_extract_args(root, tmp_path / "cache", BACKBONE), "--ray", ray_local,
                             env={KILL_ENV: f"32:{marker}"})  # after its first batch of 32 frames (of 80)
    assert report == {"code": 0, "tf": False}, proc.stderr
    assert marker.exists(), "no worker was killed: the test hook did not fire"
    killed, deadline = int(marker.read_text()), time.monotonic() + 10
    while pid_alive(killed) and time.monotonic() < deadline:  # reaped by Ray's raylet
        time.sleep(0.1)
    assert not pid_alive(killed)
    assert summary == "4 video x backbone: 4 extracted, 0 up to date, 0 failed"
    assert summary in proc.stdout.splitlines()
    assert_same_cache(root / "local_cache", tmp_path / "cache")  # whole, no temporary file left
    again = cli_ok(*random_extract_args(root, tmp_path / "cache", BACKBONE), "--ray", "local")
    assert again.stdout.splitlines()[0] == "4 video x backbone: 0 extracted, 4 up to date, 0 failed"


def train_args(root, run):
    sets = {"data.videos": root / "videos", "data.labels": root / "labels", "data.crop.mode": "none",
            "extract.cache": root / "local_cache", "extract.backbones": f"[{BACKBONE}]",
            "extract.weights": "random", "extract.input_size": 32, "train.run": run, "train.epochs": 1,
            "train.models": "[tcn]", "train.window.length": 32, "train.window.stride": 16,
            "train.tcn.filters": 8, "train.tcn.dilations": "[1, 2]", "train.folds.scheme": "group_kfold",
            "train.folds.k": 2, "train.search.space": "{tcn.filters: [4, 8]}"}
    return ["train", "--config", "configs/demo.yaml", "--quiet",
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]


def test_train_and_predict_on_ray(ray_local, data, tmp_path):
    """Out-of-fold probabilities of ``train --ray`` equal the sequential run's bit for bit;
    ``predict --ray`` of its final model extracts the new video on Ray, as extract would,
    and predicts it as a local predict does; neither driver (a second process joining the
    module's Ray) imports TensorFlow."""
    root, _ = data
    cli_ok(*train_args(root, tmp_path / "local"))
    report, proc = run_probe(*train_args(root, tmp_path / "ray"), "--ray", ray_local, "--final")
    assert report == {"code": 0, "tf": False}, proc.stderr
    probs = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("probs.h5"))
    assert len(probs) == 2
    for rel in probs:
        with h5py.File(tmp_path / "local" / rel) as x, h5py.File(tmp_path / "ray" / rel) as y:
            names = [f"{split}/{v}" for split in x for v in x[split]]
            assert names and names == [f"{split}/{v}" for split in y for v in y[split]]
            for k in names:
                assert np.array_equal(x[k][()], y[k][()]), (rel, k)  # bit for bit
        hx = json.loads((tmp_path / "local" / rel.parent / "history.json").read_text())
        hy = json.loads((tmp_path / "ray" / rel.parent / "history.json").read_text())
        assert hx["trials"] == hy["trials"] and hx["params"] == hy["params"]

    new = tmp_path / "new"
    generate_dataset(new, n_videos=1, n_frames=48, size=32, fps=5, seed=5, prefix="new")
    cli_ok(*random_extract_args(new, tmp_path / "new_cache", BACKBONE))  # the local reference
    report, proc = run_probe("predict", "--run", tmp_path / "ray", "--videos", new / "videos", "--out",
                             tmp_path / "pred", "--quiet", "--ray", ray_local)
    assert report == {"code": 0, "tf": False}, proc.stderr
    made = root / "local_cache" / BACKBONE / "new_000.h5"  # the run's cache
    (tmp_path / "ray_new" / BACKBONE).mkdir(parents=True)
    made.rename(tmp_path / "ray_new" / BACKBONE / made.name)  # the module's cache as it was
    assert_same_cache(tmp_path / "new_cache", tmp_path / "ray_new")
    assert len((tmp_path / "pred" / "new_000_predictions.csv").read_text().splitlines()) == 1 + 48
    cli_ok("predict", "--run", tmp_path / "ray", "--videos", new / "videos", "--out", tmp_path / "pred_local",
           "--cache", tmp_path / "new_cache", "--quiet")  # here, the model in this process: the same files
    for name in ("new_000_predictions.csv", "new_000_bouts.csv", "summary.csv"):
        assert (tmp_path / "pred" / name).read_bytes() == (tmp_path / "pred_local" / name).read_bytes(), name


def test_tpe_with_asha_on_ray_gives_the_local_trials(ray_local, data, tmp_path):
    """``train.search.algorithm: tpe`` with ASHA: each fold's trials proposed and pruned on
    Ray as in the sequential run (the same trials, scores, kept trial, probabilities)."""
    root, _ = data
    search = {"train.epochs": 2, "train.search.algorithm": "tpe", "train.search.n_trials": 2,
              "train.search.startup_trials": 1, "train.search.early_stop": "asha",
              "train.search.asha.min_epochs": 1, "train.search.asha.reduction_factor": 2,
              "train.search.space": "{tcn.filters: [4, 8], learning_rate: [0.01, 1.0e-7]}"}
    sets = [a for k, v in search.items() for a in ("--set", f"{k}={v}")]
    cli_ok(*train_args(root, tmp_path / "local"), *sets)
    cli_ok(*train_args(root, tmp_path / "ray"), *sets, "--ray", "local")
    folds = sorted(p.parent.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("probs.h5"))
    assert len(folds) == 2
    pruned = 0
    for rel in folds:
        hx = json.loads((tmp_path / "local" / rel / "history.json").read_text())
        hy = json.loads((tmp_path / "ray" / rel / "history.json").read_text())
        assert hx["search"]["algorithm"] == "tpe" and hx["search"]["early_stop"] == "asha"
        assert (hx["search"], hx["trials"], hx["params"]) == (hy["search"], hy["trials"], hy["params"])
        pruned += sum("pruned" in t["validation"] for t in hx["trials"])
        with h5py.File(tmp_path / "local" / rel / "probs.h5") as x, h5py.File(tmp_path / "ray" / rel / "probs.h5") as y:
            for k in [f"{split}/{v}" for split in x for v in x[split]]:
                assert np.array_equal(x[k][()], y[k][()]), (rel, k)  # bit for bit
    assert pruned  # ASHA stopped a trial (in the Ray workers as in the sequential run)


def test_unreachable_address_is_one_line(data, tmp_path):
    root, _ = data
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report, proc = run_probe(*random_extract_args(root, tmp_path / "cache", BACKBONE), "--ray", f"127.0.0.1:{port}")
    assert report["code"] == 2 and not report["tf"]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cluster.ray.address / --ray: no Ray head answers "
                                                   f"at 127.0.0.1:{port}"), proc.stderr
    assert not (tmp_path / "cache" / BACKBONE).exists() or not any((tmp_path / "cache" / BACKBONE).iterdir())


@pytest.mark.parametrize("command", ["extract", "train", "predict"])
def test_missing_ray_is_one_line(data, tmp_path, monkeypatch, command):
    root, _ = data
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    if command == "predict":
        args = ["predict", "--run", str(tmp_path), "--videos", str(root / "videos"), "--out",
                str(tmp_path / "out"), "--ray"]
    else:
        args = [*random_extract_args(root, tmp_path / "cache", BACKBONE), "--ray"]
        args[0] = command
    line = error_line(cli(*args))
    assert "needs Ray, which is not installed" in line and "pip install 'mouse-pipeline[cluster]'" in line
    assert not (tmp_path / "cache").exists()


def test_second_driver_on_one_cache_is_one_line(ray_local, data, tmp_path):
    root, _ = data
    folder = tmp_path / "cache" / BACKBONE
    holder = subprocess.Popen(  # another driver, holding the backbone folder's lock
        [sys.executable, "-c", "import sys, time; from mouse_pipeline.locks import acquire_lock\n"
         f"with acquire_lock({str(folder)!r}):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        line = error_line(cli(*random_extract_args(root, tmp_path / "cache", BACKBONE), "--ray", "local"))
        assert time.monotonic() - t0 < 30
        assert line.startswith(f"error: {folder} is locked by pid {holder.pid}"), line
        assert [p.name for p in folder.iterdir()] == [".lock"]  # nothing written beside it
    finally:
        holder.kill()
        holder.wait()
