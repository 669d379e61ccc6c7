"""Config paths: relative to the config file, --set relative to the current folder, checked at load."""

import os
from configparser import ConfigParser
from pathlib import Path

import pytest

from mouse_pipeline.config import Config, config_from_dict, load_config
from mouse_pipeline.errors import ConfigError
from mouse_pipeline.paths import (
    PROJECT_FOLDERS,
    default_config_text,
    init_project,
    project_config_text,
)
from mouse_pipeline.runs import RunFolder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A config in tmp/project with relative paths, and the current folder elsewhere."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "my.yaml").write_text(
        "data:\n  videos: data/videos/*.mp4\n  labels: data/labels\n"
        "  crop: {mode: pose, pose: ../shared/pose}\n"
        "extract:\n  cache: cache\n  weights: weights/notop.weights.h5\ntrain:\n  run: runs/first\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return folder


def test_paths_in_a_config_file_are_relative_to_its_folder(project, tmp_path):
    cfg = load_config(project / "my.yaml")
    assert cfg.data.videos == str(project / "data" / "videos" / "*.mp4")  # a glob stays a glob
    assert cfg.data.labels == str(project / "data" / "labels")
    assert cfg.data.crop.pose == str(tmp_path / "shared" / "pose")  # normalised: no '..'
    assert cfg.extract.cache == str(project / "cache")
    assert cfg.extract.weights == str(project / "weights" / "notop.weights.h5")
    assert cfg.train.run == str(project / "runs" / "first")


def test_a_relative_config_name_resolves_the_same(project, monkeypatch):
    monkeypatch.chdir(project.parent)
    assert load_config(Path("project") / "my.yaml").extract.cache == str(project / "cache")


def test_set_overrides_and_defaults_are_relative_to_the_current_folder(project, tmp_path):
    here = tmp_path / "elsewhere"
    cfg = load_config(project / "my.yaml", ["extract.cache=c2", "data.crop={mode: pose, pose: p2}"])
    assert cfg.extract.cache == str(here / "c2")
    assert cfg.data.crop.pose == str(here / "p2")
    assert cfg.data.labels == str(project / "data" / "labels")  # the file's own value
    bare = load_config(project / "my.yaml", ["train.run=/abs/run"])
    assert bare.train.run == "/abs/run"
    other = tmp_path / "other.yaml"
    other.write_text("extract:\n  batch_size: 8\n")
    assert load_config(other).train.run == str(here / "runs" / "default")  # a default


def test_named_weights_home_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    p = tmp_path / "c.yaml"
    for weights in ("imagenet", "random"):
        p.write_text(f"extract:\n  weights: {weights}\n  cache: ~/cache\ntrain:\n  run: /a/b/../run\n")
        cfg = load_config(p)
        assert cfg.extract.weights == weights
        assert cfg.extract.cache == str(tmp_path / "home" / "cache")
        assert cfg.train.run == "/a/run"


def test_config_from_dict_keeps_resolved_paths_and_replace_takes_the_current_folder(project, tmp_path):
    cfg = load_config(project / "my.yaml")
    assert config_from_dict(cfg.to_dict(), "run/config.yaml") == cfg
    moved = cfg.replace(**{"data.crop.pose": "new_pose"})
    assert moved.data.crop.pose == str(tmp_path / "elsewhere" / "new_pose")
    assert Config().extract.cache == "cache"  # the schema's defaults stay as written


def test_a_run_stores_absolute_paths_and_is_read_from_any_folder(project, tmp_path, monkeypatch):
    """predict --run reads the run's config.yaml: its cache must be found from another folder."""
    cfg = load_config(project / "my.yaml")
    run = RunFolder(cfg.train.run)
    run.write_config(cfg)
    assert f"cache: {project / 'cache'}\n" in run.config_file.read_text()
    far = tmp_path / "far"
    far.mkdir()
    monkeypatch.chdir(far)
    again = RunFolder(project / "runs" / "first").read_config()
    assert again == cfg and again.extract.cache == str(project / "cache")


def test_a_deleted_current_folder_is_one_line(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(ConfigError, match=r"^the current folder was deleted, .*; cd into an existing folder$"):
        load_config(None)


# --------------------------------------------------------------------------- checks at load


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, pattern", [
    ("extract:\n  cache: some_file/cache\n",
     r"c\.yaml: key 'extract\.cache': .*/some_file/cache is under .*/some_file, which is a file, not a "
     r"folder; set extract\.cache to the cache folder \(created if missing\)$"),
    ("extract:\n  cache: some_file\n", r"key 'extract\.cache': .*/some_file is a file, not a folder"),
    ("train:\n  run: some_file\n", r"key 'train\.run': .*/some_file is a file, not a folder; set train\.run to the run folder"),
    ("train:\n  run: some_file/runs/x\n", r"key 'train\.run': .*/some_file/runs/x is under .*/some_file, which is a file"),
    ("data:\n  labels: some_file\n", r"key 'data\.labels': .*/some_file is a file, not a folder; set data\.labels to "
                                     r"the folder of label files \(one <video>\.csv per video\)$"),
    ("data:\n  crop: {mode: pose, pose: some_file}\n", r"key 'data\.crop\.pose': .*/some_file is a file, not a folder"),
    ("extract:\n  cache: \"a\\0b\"\n", r"key 'extract\.cache': '.*a\\x00b' contains a NUL character"),
])
def test_paths_that_cannot_be_what_their_key_needs(tmp_path, text, pattern):
    (tmp_path / "some_file").write_text("not a folder\n")
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_a_dangling_symlink_as_cache_root(tmp_path):
    os.symlink(tmp_path / "gone", tmp_path / "link")
    with pytest.raises(ConfigError, match=r"key 'extract\.cache': .*/link is a symbolic link to .*/gone, which does "
                                          r"not exist; create .*/gone or set extract\.cache to another folder$"):
        load_config(write(tmp_path, "extract:\n  cache: link/cache\n"))


def test_several_path_problems_at_once_and_missing_folders_are_fine(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"c\.yaml: 2 problems: \(1\) key 'extract\.cache'.*; \(2\) key 'train\.run'"):
        load_config(write(tmp_path, "extract:\n  cache: f/c\ntrain:\n  run: f\n"))
    cfg = load_config(write(tmp_path, "data:\n  labels: not_yet\nextract:\n  cache: new/cache\n"))
    assert cfg.extract.cache == str(tmp_path / "new" / "cache")
    assert not (tmp_path / "new").exists()  # checking creates nothing


# --------------------------------------------------------------------------- init


def test_init_writes_the_commented_default_config_with_the_project_folders(tmp_path, monkeypatch):
    folder = tmp_path / "proj"
    config = init_project(folder)
    assert config == folder / "config.yaml"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*PROJECT_FOLDERS, "config.yaml"])
    monkeypatch.chdir(tmp_path)
    cfg = load_config(config)
    assert cfg.data.videos == str(folder / "videos") and cfg.data.labels == str(folder / "labels")
    assert cfg.data.crop.pose == str(folder / "pose") and cfg.extract.cache == str(folder / "cache")
    assert cfg.train.run == str(folder / "runs" / "default")
    defaults = Config().to_dict()
    for section, key in (("data", "videos"), ("data", "labels"), ("extract", "cache"), ("train", "run")):
        defaults[section][key] = cfg.to_dict()[section][key]
    defaults["data"]["crop"]["pose"] = cfg.data.crop.pose
    assert cfg.to_dict() == defaults  # every other key is the default
    text = config.read_text()
    assert text == project_config_text()
    comments = [line for line in default_config_text().splitlines() if line.lstrip().startswith("#")]
    assert len(comments) > 40 and all(line in text.splitlines() for line in comments)


def test_init_refuses_to_overwrite_without_force(tmp_path):
    folder = tmp_path / "proj"
    config = init_project(folder)
    config.write_text("extract:\n  batch_size: 8\n")
    (folder / "videos" / "a.mp4").write_bytes(b"video")
    with pytest.raises(ConfigError, match=r"proj/config\.yaml: already exists; edit it, or pass --force"):
        init_project(folder)
    assert config.read_text() == "extract:\n  batch_size: 8\n"
    init_project(folder, force=True)
    assert config.read_text() == project_config_text()
    assert (folder / "videos" / "a.mp4").read_bytes() == b"video"  # files are kept


def test_init_refuses_files_where_folders_go(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"file: cannot be a folder of the project \(.*/file is a file, not a folder\)"):
        init_project(tmp_path / "file")
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "cache").write_text("x")
    with pytest.raises(ConfigError, match=r"proj/cache: cannot be a folder of the project"):
        init_project(tmp_path / "proj")
    assert not (tmp_path / "proj" / "config.yaml").exists() and not (tmp_path / "proj" / "videos").exists()


def test_the_default_config_is_package_data():
    """A non-editable install has mouse_pipeline/configs/default.yaml (setup.cfg package_data)."""
    setup = ConfigParser()
    setup.read(REPO / "setup.cfg")
    patterns = setup["options.package_data"]["mouse_pipeline"].split()
    assert any((REPO / "mouse_pipeline").glob(p) for p in patterns)
    assert (REPO / "mouse_pipeline" / "configs" / "default.yaml") in {
        f for p in patterns for f in (REPO / "mouse_pipeline").glob(p)}
