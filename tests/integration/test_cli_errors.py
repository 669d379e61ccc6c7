"""Bad input and config through the CLI: exit 2, one line naming the problem, nothing written."""

import numpy as np
import pytest

from mouse_pipeline.synthetic import generate_dataset
from tests.integration import random_extract_args


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate_dataset(root, n_videos=1, n_frames=24, size=64, fps=5, seed=0)
    return root


def extract_args(root, cache, *extra):
    return random_extract_args(root, cache, "mobilenet_v3_small", 32, *extra)


@pytest.mark.parametrize("extra, pattern", [
    (["--set", "extract.batch_size=-3"], "key 'extract.batch_size': value out of range"),
    (["--set", "extract.colour=red"], "unknown key 'extract.colour'"),
    (["--set", "extract.backbones=[vgg99]"], "unknown backbone 'vgg99'; choose from resnet50v2"),
])
def test_config_errors_exit_2_with_one_line(tiny, tmp_path, run_cli, extra, pattern):
    cache = tmp_path / "cache"
    result = run_cli(*extract_args(tiny, cache, *extra))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0]
    assert not cache.exists() or not any(cache.rglob("*.h5"))


def test_missing_video_folder(tmp_path, run_cli):
    cache = tmp_path / "cache"
    result = run_cli(*extract_args(tmp_path / "nowhere", cache))
    assert result.exit_code == 2
    assert "nowhere/videos: no such file or folder" in result.output
    assert not cache.exists()


def test_not_a_video_leaves_cache_untouched(tiny, tmp_path, run_cli):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "good.mp4").write_bytes((tiny / "videos" / "mouse_000.mp4").read_bytes())
    (videos / "notes.mp4").write_text("this is not a video\n")
    cache = tmp_path / "cache"
    result = run_cli(*extract_args(tmp_path, cache))
    assert result.exit_code == 2 and "notes.mp4" in result.output
    assert not any(cache.rglob("*.h5")) if cache.exists() else True


def test_missing_config_file_and_malformed_yaml(tmp_path, run_cli):
    result = run_cli("extract", "--config", tmp_path / "none.yaml")
    assert result.exit_code == 2 and "config file does not exist" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("extract: [unclosed\n")
    result = run_cli("extract", "--config", bad)
    assert result.exit_code == 2 and "malformed YAML" in result.output


def test_debug_shows_traceback(tmp_path, run_cli):
    from mouse_pipeline.errors import ConfigError

    with pytest.raises(ConfigError):
        run_cli("extract", "--config", tmp_path / "none.yaml", "--debug")


def test_cache_ls_and_second_run_is_a_noop(tiny, tmp_path, run_cli):
    cache = tmp_path / "cache"
    first = run_cli(*extract_args(tiny, cache))
    assert first.exit_code == 0, first.output
    f = next((cache / "mobilenet_v3_small").glob("*.h5"))
    mtime = f.stat().st_mtime_ns
    second = run_cli(*extract_args(tiny, cache))
    assert second.exit_code == 0 and "1 up to date" in second.output
    assert f.stat().st_mtime_ns == mtime
    listing = run_cli("cache", "ls", cache)
    assert listing.exit_code == 0
    assert "mouse_000" in listing.output and "mobilenet_v3_small" in listing.output and "fresh" in listing.output


def test_predict_without_final_models_says_how_to_train_them(tmp_path, run_cli):
    from mouse_pipeline.config import Config, dump_config

    run = tmp_path / "run"
    run.mkdir()
    dump_config(Config(), run / "config.yaml")
    result = run_cli("predict", "--run", run, "--videos", tmp_path, "--out", tmp_path / "o",
                     "--model", "resnet50v2/lstm")
    assert result.exit_code == 2
    assert "no final model for resnet50v2/lstm; train it with `mouse-pipeline train" in result.output
    assert "--final" in result.output


def test_a_pose_track_outside_the_frame_is_refused_before_extracting(tmp_path, run_cli):
    """The pose file of another video or resolution: black crops and a misleading warning
    about the weights before; now one line naming the pose file."""
    from mouse_pipeline.pose import read_dlc, write_dlc_csv

    generate_dataset(tmp_path, n_videos=1, n_frames=24, size=64, fps=5, seed=0)
    pose = tmp_path / "pose" / "mouse_000.csv"
    xy = read_dlc(pose, "midbody", 0.6)
    write_dlc_csv(pose, {"midbody": np.column_stack([xy + 1000.0, np.ones(len(xy))])})
    cache = tmp_path / "cache"
    result = run_cli(*random_extract_args(tmp_path, cache, "mobilenet_v3_small", 32, "--set", "data.crop.mode=pose",
                                          "--set", f"data.crop.pose={tmp_path / 'pose'}"))
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(pose) in line and "outside" in line
    assert not cache.exists() or not any(cache.rglob("*.h5"))


def test_a_multi_animal_pose_file_needs_data_crop_individual(tmp_path, run_cli):
    """With two animals and none named, extract stops listing them; naming one crops around
    it exactly as its single-animal file would, and the choice is part of the cache's identity."""
    import h5py

    from mouse_pipeline.features.store import DATASET, cache_path
    from mouse_pipeline.pose import read_dlc
    from tests.unit.test_pose_formats import multi_csv

    generate_dataset(tmp_path, n_videos=1, n_frames=24, size=64, fps=5, seed=0)
    pose_dir = tmp_path / "pose"
    single = pose_dir / "mouse_000.csv"
    args = random_extract_args(tmp_path, tmp_path / "single", "mobilenet_v3_small", 32, "--set", "data.crop.mode=pose",
                               "--set", f"data.crop.pose={pose_dir}", "--set", "data.crop.size=32")
    assert run_cli(*args).exit_code == 0
    xy = read_dlc(single, "midbody", 0.6)
    track = np.column_stack([xy, np.ones(len(xy))])
    single.unlink()
    multi_csv(pose_dir / "mouse_000.csv", {"m1": {"midbody": track}, "m2": {"midbody": track[::-1].copy()}})
    multi_args = [a.replace(str(tmp_path / "single"), str(tmp_path / "multi")) for a in map(str, args)]
    result = run_cli(*multi_args)
    assert result.exit_code == 2 and "has 2 individuals with 'midbody' (m1, m2)" in result.output
    assert run_cli(*multi_args, "--set", "data.crop.individual=m1").exit_code == 0
    with h5py.File(cache_path(tmp_path / "single", "mobilenet_v3_small", "mouse_000")) as a, \
            h5py.File(cache_path(tmp_path / "multi", "mobilenet_v3_small", "mouse_000")) as b:
        np.testing.assert_array_equal(a[DATASET][()], b[DATASET][()])
        assert "individual" not in a.attrs["crop"] and '"individual":"m1"' in b.attrs["crop"]


@pytest.mark.parametrize("command", [
    ["train", "--config", "configs/demo.yaml", "--run", "{file}/run"],
    ["predict", "--run", "{tmp}", "--videos", "{tmp}", "--out", "{file}/out"],
    ["score", "--labels", "{file}", "--predictions", "{file}", "--fps", "10", "--csv", "{file}/metrics.csv"],
])
def test_an_output_folder_under_a_regular_file_is_one_line(tmp_path, run_cli, command):
    file = tmp_path / "notes.txt"
    file.write_text("a file, not a folder\n")
    result = run_cli(*[part.format(file=file, tmp=tmp_path) for part in command])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: ")
    assert f"{file}, which is a file, not a folder" in line or f"{file} is a file, not a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
