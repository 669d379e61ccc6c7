"""Commands that need no model start without TensorFlow or Keras.

Each command runs in a fresh Python process through ``stages.cli.main``; afterwards the
process reports its exit code and whether ``tensorflow`` or ``keras`` was imported. Only
building or running a model may import them: ``--help``, ``cache ls --config``,
``cache import``, a re-extract with every file already fresh, and a config error must not
(importing Keras costs seconds). A real extraction, which builds a backbone, is the control that shows
the check sees an import when there is one.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mouse_pipeline.synthetic import generate_dataset
from tests.integration import random_extract_args

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "keras")
# runs the command in-process, then says on its last line what it left imported
_PROBE = (
    "import json, sys\n"
    "from stages.cli import main\n"
    "code = 0\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    f"heavy = sorted(set({HEAVY!r}) & set(sys.modules))\n"
    "print(json.dumps({'code': code, 'heavy': heavy}))\n"
)


def run_probe(*args):
    """Run ``mouse-pipeline ARGS`` in a new process: (exit code, heavy modules, stdout, stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, proc.stderr
    report = json.loads(lines[-1])
    return report["code"], report["heavy"], "\n".join(lines[:-1]), proc.stderr


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A synthetic dataset, extracted once (by a process that had to build a backbone)."""
    root = tmp_path_factory.mktemp("startup")
    generate_dataset(root, n_videos=2, n_frames=16, size=32, seed=0)
    args = random_extract_args(root, root / "cache")
    code, heavy, out, err = run_probe(*args)
    assert code == 0, err
    return root, args, heavy, out


def test_an_extraction_that_builds_a_model_is_seen_importing_it(extracted):
    _, _, heavy, out = extracted
    assert "2 extracted" in out
    assert "keras" in heavy  # the probe does see a Keras import: the tests below can fail


def test_help_imports_no_tensorflow():
    code, heavy, out, _ = run_probe("--help")
    assert code == 0 and "extract" in out and "cache" in out
    assert heavy == []


def test_no_op_re_extract_imports_no_tensorflow(extracted):
    _, args, _, _ = extracted
    code, heavy, out, _ = run_probe(*args)
    assert code == 0 and "0 extracted, 2 up to date, 0 failed" in out
    assert heavy == []


def test_cache_ls_with_a_config_imports_no_tensorflow(extracted):
    root, args, _, _ = extracted
    code, heavy, out, _ = run_probe("cache", "ls", root / "cache", *args[1:])
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[1], r[-1]) for r in rows] == [("mouse_000", "resnet50v2", "fresh"),
                                                  ("mouse_001", "resnet50v2", "fresh")]
    assert heavy == []


def test_cache_import_imports_no_tensorflow(extracted, tmp_path):
    root, _, _, _ = extracted
    feats = tmp_path / "feats"
    feats.mkdir()
    for vid in ("mouse_000", "mouse_001"):
        np.save(feats / f"{vid}.npy", np.zeros((16, 3)))
    code, heavy, out, err = run_probe("cache", "import", "--set", f"data.videos={root / 'videos'}", "--set",
                                      f"extract.cache={tmp_path / 'cache'}", "--name", "ext", "--from", feats,
                                      "--tool", "t")
    assert code == 0 and "2 imported" in out, err
    assert heavy == []


@pytest.mark.parametrize("command, override, message", [
    ("extract", "extract.batch_size=-1", "key 'extract.batch_size': value out of range"),
    ("extract", "extract.backbones=[vgg99]", "unknown backbone 'vgg99'"),
    ("extract", "extract.input_size=40", "inception_resnet_v2 needs at least 75 px"),
    ("train", "train.bogus=1", "unknown key 'train.bogus'"),
])
def test_config_error_imports_no_tensorflow(extracted, command, override, message):
    root, args, _, _ = extracted
    extra = ["--set", "extract.backbones=[inception_resnet_v2]"] if "input_size" in override else []
    code, heavy, _, err = run_probe(command, *args[1:], *extra, "--set", override)
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert heavy == []


def test_bench_refuses_a_start_up_command_that_did_not_do_its_job(tmp_path):
    from mouse_pipeline.startup import _Command, _median_wall_s

    assert _median_wall_s(_Command("help", ("--help",), says="extract"), repeats=1) > 0
    with pytest.raises(RuntimeError, match="'help' ended with exit code 0 .*saying 'no such words'"):
        _median_wall_s(_Command("help", ("--help",), says="no such words"), repeats=1)
    with pytest.raises(RuntimeError, match="'ls' ended with exit code 2 .*expected 0"):
        _median_wall_s(_Command("ls", ("cache", "ls", str(tmp_path / "nowhere"))), repeats=1)


def test_importing_the_commands_and_library_changes_nothing():
    # (third-party libraries set variables of their own: OpenCV LD_LIBRARY_PATH, scikit-learn KMP_*)
    code = ("import json, os, sys, matplotlib\n"
            "keys = ('TF_CPP_MIN_LOG_LEVEL', 'MPLBACKEND', 'KERAS_BACKEND', 'CUDA_VISIBLE_DEVICES')\n"
            "backend = dict.__getitem__(matplotlib.rcParams, 'backend')\n"
            "import stages.cli, mouse_pipeline.bench, mouse_pipeline.backbones, mouse_pipeline.plots\n"
            "import mouse_pipeline.features.extract, mouse_pipeline.startup\n"
            "set_here = [k for k in keys if k in os.environ]\n"
            "switched = dict.__getitem__(matplotlib.rcParams, 'backend') != backend\n"
            "loaded = sorted({'tensorflow', 'keras', 'matplotlib.pyplot'} & set(sys.modules))\n"
            "print(json.dumps([set_here, switched, loaded]))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "MPLBACKEND", "KERAS_BACKEND", "CUDA_VISIBLE_DEVICES")}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout) == [[], False, []]
