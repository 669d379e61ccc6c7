"""Config trust through the CLI (issue 12): one error line and exit 2 for bad YAML, every
problem at once, paths relative to the config file, and ``init``."""

import subprocess
import sys
from pathlib import Path

import pytest

from mouse_pipeline.synthetic import generate_dataset
from tests.unit.test_config import alias_bomb

REPO = Path(__file__).resolve().parents[2]


def one_error_line(result):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_duplicate_section_exits_2_naming_file_and_line(tmp_path, run_cli):
    p = tmp_path / "dup.yaml"
    p.write_text("train:\n  epochs: 3\nextract:\n  batch_size: 8\ntrain:\n  epochs: 5\n")
    line = one_error_line(run_cli("train", "--config", p))
    assert line == (f"error: {p}: line 5: duplicate key 'train' (first at line 1); YAML would "
                    "silently keep only the last one: merge them or delete one")


def test_alias_bomb_fails_fast_in_a_real_process(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(alias_bomb())
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "extract", "--config", str(p)],
                          cwd=REPO, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {p}: line 5: YAML alias '*a0': aliases are not accepted in a config (a "
                     "few nested ones expand into billions of values); write the value out in full"]


def test_several_problems_in_one_line(tmp_path, run_cli):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  seed: -1\n  window:\n    length: 100000000\ndata:\n  fps: .inf\n"
                 "extract:\n  cache: notes.txt/cache\n")
    (tmp_path / "notes.txt").write_text("x")
    line = one_error_line(run_cli("extract", "--config", p, "--set", "extract.batch_size=0"))
    assert line.startswith(f"error: {p}: 5 problems: (1) key 'data.fps': expected a finite number")
    for part in ("(2) key 'extract.batch_size': value out of range", "(3) key 'train.seed': value out of range",
                 "(4) key 'train.window.length': value out of range: expected an integer between 2 and "
                 "100000, got 100000000", f"(5) key 'extract.cache': {tmp_path}/notes.txt/cache is under "):
        assert part in line


@pytest.mark.slow
def test_extract_with_a_config_in_another_folder(tmp_path, run_cli, monkeypatch):
    """Relative paths follow the config file, not the shell's folder; --set follows the shell."""
    project = tmp_path / "project"
    generate_dataset(project / "data", n_videos=1, n_frames=16, size=64, fps=5, seed=0)
    config = project / "my.yaml"
    config.write_text("data:\n  videos: data/videos\n  labels: data/labels\n"
                      "extract:\n  cache: cache\n  backbones: [mobilenet_v3_small]\n  weights: random\n"
                      "  input_size: 32\n  batch_size: 8\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_cli("extract", "--config", config, "--quiet")
    assert result.exit_code == 0, result.output
    assert (project / "cache" / "mobilenet_v3_small" / "mouse_000.h5").is_file()
    assert list(elsewhere.iterdir()) == []
    result = run_cli("extract", "--config", config, "--quiet", "--set", "extract.cache=here")
    assert result.exit_code == 0, result.output
    assert (elsewhere / "here" / "mobilenet_v3_small" / "mouse_000.h5").is_file()


def test_init_then_refuse_then_force(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("init", "proj")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("wrote proj/config.yaml")
    assert "mouse-pipeline extract --config proj/config.yaml" in result.output
    assert all((tmp_path / "proj" / name).is_dir() for name in ("videos", "labels", "pose", "cache", "runs"))
    line = one_error_line(run_cli("init", "proj"))
    assert line == ("error: proj/config.yaml: already exists; edit it, or pass --force to replace it "
                    "with the default config")
    assert run_cli("init", "proj", "--force").exit_code == 0
    monkeypatch.chdir(tmp_path / "proj" / "videos")  # the project's config works from anywhere
    assert run_cli("cache", "ls", tmp_path / "proj" / "cache", "--config", tmp_path / "proj" / "config.yaml").exit_code == 0
