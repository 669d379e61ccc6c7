"""``mouse-pipeline cache import`` through the CLI: bad feature files refused (exit 2, one
line naming the file, nothing written), a SIGKILL while writing (no partial file; the next
import finishes), and a round trip: features imported, shown by ``cache ls``, trained on,
and predicted for a new video whose features were imported."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mouse_pipeline.metrics import binary_metrics
from mouse_pipeline.synthetic import BEHAVIORS, generate_dataset
from tests.integration.runs import cli, cli_ok, error_line, read_csv

N_FRAMES = 40


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("import_cli")
    generate_dataset(root, n_videos=2, n_frames=N_FRAMES, size=32, fps=10, seed=7)
    return root


def import_args(videos, cache, feats, *extra):
    return ["cache", "import", "--set", f"data.videos={videos}", "--set", f"extract.cache={cache}",
            "--name", "ext", "--from", feats, "--tool", "test", "--quiet", *extra]


@pytest.fixture
def feats(tmp_path):
    """Good features for both videos; a test spoils one of them."""
    folder = tmp_path / "feats"
    folder.mkdir()
    for vid in ("mouse_000", "mouse_001"):
        np.save(folder / f"{vid}.npy", np.zeros((N_FRAMES, 4)))
    return folder


def spoil_rows(folder):
    np.save(folder / "mouse_001.npy", np.zeros((N_FRAMES - 1, 4)))
    return "mouse_001.npy", [f"{N_FRAMES - 1} rows", f"{N_FRAMES} decoded frames"]


def spoil_nan(folder):
    x = np.zeros((N_FRAMES, 4))
    x[7, 2] = np.nan
    np.save(folder / "mouse_001.npy", x)
    return "mouse_001.npy", ["row 7"]


def spoil_unknown(folder):
    np.save(folder / "ghost.npy", np.zeros((N_FRAMES, 4)))
    return "ghost.npy", ["no video named 'ghost'", "videos"]


def spoil_missing(folder):
    (folder / "mouse_001.npy").unlink()
    return "mouse_001.mp4", ["no feature file for this video", str(folder)]


def spoil_dim(folder):
    np.save(folder / "mouse_001.npy", np.zeros((N_FRAMES, 5)))
    return "mouse_001.npy", ["5 features per frame", "has 4"]


def spoil_csv(folder):
    (folder / "mouse_001.npy").unlink()
    (folder / "mouse_001.csv").write_text("a,b\n" + "1,2\n" * 5 + "1,two\n")
    return "mouse_001.csv", ["not a CSV of numbers", "'two'"]


def spoil_unreadable(folder):
    (folder / "mouse_001.npy").write_bytes(b"\x93NUMPY garbage")
    return "mouse_001.npy", ["not a NumPy array of numbers"]


@pytest.mark.parametrize("spoil", [spoil_rows, spoil_nan, spoil_unknown, spoil_missing, spoil_dim,
                                   spoil_csv, spoil_unreadable])
def test_a_bad_feature_file_exits_2_naming_it_and_nothing_is_written(small, feats, tmp_path, spoil):
    name, parts = spoil(feats)
    line = error_line(cli(*import_args(small / "videos", tmp_path / "cache", feats)))
    assert name in line, line
    for part in parts:
        assert part in line, line
    assert not list((tmp_path / "cache").rglob("*.h5*"))  # the good file was not written either


def test_a_registry_backbone_name_is_refused(small, feats, tmp_path):
    line = error_line(cli("cache", "import", "--set", f"data.videos={small / 'videos'}", "--set",
                          f"extract.cache={tmp_path / 'cache'}", "--name", "resnet50v2", "--from", feats,
                          "--tool", "t"))
    assert "--name resnet50v2: the name of a backbone that extract computes" in line
    assert not (tmp_path / "cache").exists()


# -- kill safety -------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
# imports two videos; stops for good (until killed) while writing the second one
_KILLED_WHILE_WRITING = """
import sys, time
from pathlib import Path
from mouse_pipeline.config import load_config
from mouse_pipeline.features import importing
from mouse_pipeline.features.writer import CacheWriter
videos, cache, feats, marker = sys.argv[1:5]
real = CacheWriter.write
def write(self, batch):
    if self.path.stem == "mouse_001":
        Path(marker).write_text("writing")
        time.sleep(120)
    real(self, batch)
CacheWriter.write = write
cfg = load_config(None, [f"data.videos={videos}", f"extract.cache={cache}"])
importing.import_features(cfg, "ext", feats, "test")
"""


def test_a_killed_import_leaves_no_partial_file_and_the_next_one_finishes(small, feats, tmp_path):
    cache, marker = tmp_path / "cache", tmp_path / "writing"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WHILE_WRITING, small / "videos", cache, feats, marker],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the import never reached the second video"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    folder = cache / "ext"
    assert sorted(p.name for p in folder.glob("*.h5")) == ["mouse_000.h5"]  # whole, or not there
    assert [p.name for p in folder.glob("mouse_001.h5.tmp-*")]  # what the killed writer left
    out = cli_ok(*import_args(small / "videos", cache, feats)).output  # takes over the stale lock
    assert "1 imported, 1 up to date" in out
    assert sorted(p.name for p in folder.iterdir()) == ["mouse_000.h5", "mouse_001.h5"]


# -- round trip ---------------------------------------------------------------------------

PLANTED_DIM = 8


def planted_features(labels_csv, rng):
    """Per-frame features: the frame's labels (plus noise) in the first 3 columns, noise after."""
    y = np.loadtxt(labels_csv, delimiter=",", skiprows=1)
    x = rng.normal(size=(len(y), PLANTED_DIM))
    x[:, :len(BEHAVIORS)] += 2.5 * y
    return x, y


@pytest.mark.slow
def test_import_train_predict_round_trip(tmp_path):
    data, new = tmp_path / "data", tmp_path / "new"
    generate_dataset(data, n_videos=3, n_frames=300, size=32, fps=10, seed=21)
    generate_dataset(new, n_videos=1, n_frames=200, size=32, fps=10, seed=25, prefix="new")
    rng = np.random.default_rng(0)
    feats, new_feats = tmp_path / "feats", tmp_path / "new_feats"
    feats.mkdir(), new_feats.mkdir()
    for vid in ("mouse_000", "mouse_001", "mouse_002"):
        x, _ = planted_features(data / "labels" / f"{vid}.csv", rng)
        if vid == "mouse_001":
            np.savetxt(feats / f"{vid}.csv", x, delimiter=",")  # formats may differ per video
        else:
            np.save(feats / f"{vid}.npy", x)
    x_new, y_new = planted_features(new / "labels" / "new_000.csv", rng)
    np.save(new_feats / "new_000.npy", x_new)

    cache, run = tmp_path / "cache", tmp_path / "run"
    sets = {"data.videos": data / "videos", "data.labels": data / "labels", "data.crop.mode": "none",
            "extract.cache": cache, "extract.backbones": "[planted]", "train.run": run,
            "train.models": "[tcn]", "train.epochs": 10, "train.learning_rate": 0.01,
            "train.batch_size": 4, "train.input_dropout": 0.1, "train.window.length": 32,
            "train.window.stride": 16, "train.tcn.filters": 8, "train.tcn.dilations": "[1, 2]",
            "train.folds.scheme": "fixed", "train.folds.train": "[mouse_000, mouse_001]",
            "train.folds.test": "[mouse_002]"}
    args = ["--config", "configs/demo.yaml", *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
    tool = "planted-signal"
    out = cli_ok("cache", "import", *args, "--name", "planted", "--from", feats, "--tool", tool).output
    assert "3 imported, 0 up to date" in out
    assert "0 imported, 3 up to date" in cli_ok("cache", "import", *args, "--name", "planted", "--from", feats,
                                                 "--tool", tool).output
    listing = cli_ok("cache", "ls", cache).stdout.splitlines()
    assert listing[0].split()[5:8] == ["weights", "tool", "source"]
    rows = {line.split()[0]: line.split() for line in listing[1:]}
    assert rows["mouse_001"][5:8] == ["imported", tool, "mouse_001.csv"]
    assert rows["mouse_000"][7] == "mouse_000.npy" and rows["mouse_000"][-1] == "fresh"

    cli_ok("extract", *args, "--quiet")  # nothing to compute: the stream is imported
    cli_ok("train", *args, "--final", "--quiet")
    pred = tmp_path / "pred"
    line = error_line(cli("predict", "--run", run, "--videos", new / "videos", "--out", pred, "--quiet"))
    assert "imported features 'planted': none for new_000.mp4" in line and "cache import" in line
    assert not pred.exists() or not any(pred.iterdir())

    new_cache = tmp_path / "new_cache"
    cli_ok("cache", "import", *args, "--set", f"data.videos={new / 'videos'}", "--set",
           f"extract.cache={new_cache}", "--name", "planted", "--from", new_feats, "--tool", tool)
    cli_ok("predict", "--run", run, "--videos", new / "videos", "--out", pred, "--cache", new_cache, "--quiet")
    table = read_csv(pred / "new_000_predictions.csv")
    assert len(table) == 200 == len(y_new)
    for j, b in enumerate(BEHAVIORS):
        prevalence = y_new[:, j].mean()
        pr_auc = binary_metrics(y_new[:, j], np.array([float(r[f"p_{b}"]) for r in table]), 0.5)["pr_auc"]
        assert pr_auc > prevalence + 0.3, (b, pr_auc, prevalence)  # the features reached their frames
    shutil.rmtree(new_cache)
