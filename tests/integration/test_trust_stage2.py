"""Stage 2 never trains on embeddings that are not its videos', and a failed run leaves
nothing that blocks its rerun: each case one line, exit code 2, through the CLI."""

import shutil

import h5py
import numpy as np
import pytest

from mouse_pipeline.config import load_config
from mouse_pipeline.dataset import load_dataset
from mouse_pipeline.features.store import DATASET, cache_path
from tests.integration.runs import BACKBONE, cli, error_line

pytestmark = pytest.mark.slow


@pytest.fixture
def copy(run_dataset, tmp_path):
    """The run dataset's videos, labels and cache, copied to be changed."""
    for name in ("data", "cache"):
        shutil.copytree(getattr(run_dataset, name), tmp_path / name)
    return tmp_path


def train(root, *sets):
    pairs = {"data.videos": root / "data" / "videos", "data.labels": root / "data" / "labels",
             "data.crop.mode": "none", "extract.cache": root / "cache", "extract.backbones": f"[{BACKBONE}]",
             "extract.weights": "random", "extract.input_size": 32, "train.run": root / "run",
             "train.epochs": 1, "train.window.length": 32, "train.window.stride": 16,
             "train.lstm.units": 4, "train.models": "[lstm]", "train.folds.scheme": "group_kfold",
             "train.folds.k": 2}
    args = [f"{k}={v}" for k, v in pairs.items()] + list(sets)
    return cli("train", "--config", "configs/demo.yaml", "--quiet", *[a for p in args for a in ("--set", p)])


def nothing_left(run):
    """Only the run's log: no config, record or fold that would block a corrected rerun."""
    return [p.name for p in run.iterdir()] == ["logs"]


def cache_ls(root):
    """``cache ls`` of the copy: its line per video id."""
    result = cli("cache", "ls", root / "cache")
    assert result.exit_code == 0, result.output
    return {line.split()[0]: line for line in result.stdout.splitlines()[1:]}


def cache_file(root, vid):
    return cache_path(root / "cache", BACKBONE, vid)


def test_two_swapped_cache_files_are_refused(copy):
    a, b = cache_file(copy, "mouse_000"), cache_file(copy, "mouse_001")
    a.rename(a.with_suffix(".swap"))
    b.rename(a)
    a.with_suffix(".swap").rename(b)
    line = error_line(train(copy))
    assert str(a) in line and "not the embeddings of" in line and "mouse_000.mp4" in line
    assert "mouse_001.mp4" in line and "mouse-pipeline extract" in line
    assert nothing_left(copy / "run")  # nothing trained, nothing left but the log
    listing = cache_ls(copy)
    assert "made from mouse_001.mp4, not from video mouse_000" in listing["mouse_000"]
    assert "made from mouse_000.mp4, not from video mouse_001" in listing["mouse_001"]
    assert listing["mouse_002"].split()[-1] == "fresh"


def test_a_video_copied_over_another_after_extraction_is_refused(copy):
    videos = copy / "data" / "videos"
    shutil.copyfile(videos / "mouse_002.mp4", videos / "mouse_001.mp4")
    line = error_line(train(copy))
    assert str(cache_file(copy, "mouse_001")) in line and "the video changed since it was extracted" in line


def test_nan_in_embeddings_names_the_file_and_the_first_bad_frame(copy):
    path = cache_file(copy, "mouse_003")
    with h5py.File(path, "r+") as f:
        f[DATASET][17, 5] = np.nan
        f[DATASET][40, 0] = np.inf
    line = error_line(train(copy))
    assert f"{path}: embeddings hold NaN or infinite values, first at frame 17" in line
    assert "stale" in cache_ls(copy)["mouse_003"] and "NaN or infinite values, first at frame 17" in cache_ls(copy)["mouse_003"]


def test_a_failed_train_leaves_nothing_and_the_corrected_rerun_trains(copy):
    missing = cache_file(copy, "mouse_002")
    keep = missing.with_suffix(".kept")
    missing.rename(keep)
    line = error_line(train(copy))
    assert str(missing) in line
    assert nothing_left(copy / "run")
    log = next((copy / "run" / "logs").glob("train-*.log")).read_text()
    assert "INFO mouse_pipeline" in log and f"ERROR mouse_pipeline: error: {missing}" in log
    keep.rename(missing)
    result = train(copy)  # not "made with a different config": nothing was trained before
    assert result.exit_code == 0, result.output
    assert (copy / "run" / BACKBONE / "lstm" / "fold_0").is_dir()


def test_a_behaviour_that_cannot_be_a_file_name_is_refused_before_training(copy):
    line = error_line(train(copy, "data.behaviors=[gr/oo]", "data.label_columns={grooming: gr/oo}",
                           "train.heads=per_behavior"))
    assert "'gr/oo' cannot be part of a file name" in line
    assert nothing_left(copy / "run")


def test_label_files_are_found_by_the_videos_real_name(copy):
    data = copy / "data"
    for vid in ("mouse_000", "mouse_001"):
        (data / "videos" / f"{vid}.mp4").rename(data / "videos" / f"{vid.replace('_', ' ')}.mp4")
        (data / "labels" / f"{vid}.csv").rename(data / "labels" / f"{vid.replace('_', ' ')}.csv")
    cfg = load_config(None, [f"data.videos={data / 'videos'}", f"data.labels={data / 'labels'}",
                             f"extract.cache={copy / 'cache'}", f"extract.backbones=[{BACKBONE}]",
                             "extract.weights=random", "extract.input_size=32"])  # as the cache was made
    # the ids (and so the cache files) are sanitised; the label files keep the real names
    videos = load_dataset(cfg, BACKBONE)
    assert [v.video_id for v in videos] == ["mouse_000", "mouse_001", "mouse_002", "mouse_003"]
    assert videos[0].label_file == data / "labels" / "mouse 000.csv"


def test_two_label_files_for_one_video_are_refused(copy):
    labels = copy / "data" / "labels"
    shutil.copyfile(labels / "mouse_001.csv", labels / "mouse_001.tsv")
    line = error_line(train(copy))
    assert str(labels / "mouse_001.csv") in line and "mouse_001.tsv" in line and "keep one" in line


def test_a_window_longer_than_every_video_is_refused(copy):
    line = error_line(train(copy, "train.window.length=200", "train.window.stride=100"))
    assert "train.window.length is 200 frames, longer than every labelled video (the longest has 80)" in line
    assert nothing_left(copy / "run")
