"""Stage 2 trains only on cache files that extract with its config would leave as they are.

The run records its config, and ``predict`` extracts new videos with it: a model trained
on embeddings made with other settings (another input size, crop, weights, pose file,
motion method, ...) would be applied to embeddings it never saw, without a word. So
``dataset.load_dataset`` refuses such a file, naming it and the setting that differs,
even when every video's file was made with the same (other) settings.

The cache files are written here through the cache writer with the attributes extract
would record (:func:`mouse_pipeline.features.planning.expected_now`) and planted
features: no backbone is run, no TensorFlow is imported.
"""

from pathlib import Path

import numpy as np
import pytest

from mouse_pipeline.config import load_config
from mouse_pipeline.dataset import load_dataset
from mouse_pipeline.errors import CacheError
from mouse_pipeline.features.planning import cache_table, expected_now
from mouse_pipeline.features.store import cache_path
from mouse_pipeline.features.writer import CacheWriter
from mouse_pipeline.pose import read_dlc, write_dlc_csv
from mouse_pipeline.synthetic import generate_dataset

FRAMES, FPS, DIM = 12, 5.0, 4
IDS = ("mouse_000", "mouse_001")
BACKBONE, MOTION, POSE = "mobilenet_v3_small", "mobilenet_v3_small+motion", "pose"


@pytest.fixture
def root(tmp_path) -> Path:
    generate_dataset(tmp_path, n_videos=len(IDS), n_frames=FRAMES, size=32, fps=FPS, seed=3)
    return tmp_path


def config(root: Path, *overrides: str):
    return load_config(None, [
        f"data.videos={root / 'videos'}", f"data.labels={root / 'labels'}", "data.crop.mode=pose",
        f"data.crop.pose={root / 'pose'}", "data.crop.size=32", f"extract.cache={root / 'cache'}",
        f"extract.backbones=[{BACKBONE}, {MOTION}, {POSE}]", "extract.weights=random",
        "extract.input_size=32", "extract.precision=float32", *overrides])


def write_cache(cfg, stream: str) -> None:
    """Every video's cache file of ``stream`` as extract with ``cfg`` records it."""
    rng = np.random.default_rng(0)
    for vid in IDS:
        attrs, _ = expected_now(cfg, stream, Path(cfg.data.videos) / f"{vid}.mp4")
        with CacheWriter(cache_path(cfg.extract.cache, stream, vid), FRAMES, DIM, cfg.extract.dtype,
                         {**attrs, "fps": FPS}) as w:
            w.write(rng.normal(size=(FRAMES, DIM)))


@pytest.mark.parametrize(("stream", "override", "reason"), [
    (BACKBONE, "extract.input_size=48", "input_size changed (32 -> 48)"),
    (BACKBONE, "data.crop.size=40", "crop changed ("),
    (BACKBONE, "data.crop.bodypart=snout", "crop changed ("),
    (BACKBONE, "data.crop.mode=none", "crop changed ("),
    (BACKBONE, "extract.weights=imagenet", "weights changed ('random' -> 'imagenet')"),
    (BACKBONE, "extract.dtype=float16", "dtype changed ('float32' -> 'float16')"),
    (BACKBONE, "extract.precision=bfloat16", "precision changed ('float32' -> 'bfloat16')"),
    (MOTION, "extract.input_size=48", "input_size changed (32 -> 48)"),
    (MOTION, "extract.motion.method=diff", "motion changed ("),
    (MOTION, "extract.motion.flow_scale=4.0", "motion changed ("),
    (POSE, "extract.pose_features.min_likelihood=0.9", "pose_features changed ("),
])
def test_a_cache_made_with_other_settings_than_the_config_is_refused(root, stream, override, reason):
    made = config(root)
    write_cache(made, stream)
    assert [v.video_id for v in load_dataset(made, stream)] == list(IDS)  # its own settings: used
    with pytest.raises(CacheError) as info:
        load_dataset(config(root, override), stream)  # every file alike, but not the config's
    message = str(info.value)
    first = cache_path(made.extract.cache, stream, IDS[0])
    assert message.startswith(f"{first}: made with other settings than this config's ({reason}")
    assert "run `mouse-pipeline extract` with this config" in message


@pytest.mark.parametrize("stream", [BACKBONE, POSE])
def test_a_pose_file_changed_after_extraction_makes_its_video_refused(root, stream):
    cfg = config(root, f"extract.pose_features.pose={root / 'pose'}")
    write_cache(cfg, stream)
    pose = root / "pose" / f"{IDS[1]}.csv"
    xy = read_dlc(pose, "midbody", 0.6)
    write_dlc_csv(pose, {"midbody": np.column_stack([xy + 1.0, np.ones(len(xy))])})
    with pytest.raises(CacheError) as info:
        load_dataset(cfg, stream)
    assert str(info.value).startswith(f"{cache_path(cfg.extract.cache, stream, IDS[1])}: made with other "
                                      "settings than this config's (pose_sha256 changed (")
    # cache ls judges the files by the same rule
    rows = {r["video"]: r for r in cache_table(cfg.extract.cache, cfg) if r["backbone"] == stream}
    assert (rows[IDS[0]]["status"], rows[IDS[1]]["status"]) == ("fresh", "stale")
    assert rows[IDS[1]]["reason"].startswith("pose_sha256 changed (")


def test_precision_auto_takes_the_precision_the_extracting_machine_chose(root):
    write_cache(config(root), BACKBONE)  # float32, as auto is on a GPU machine
    assert len(load_dataset(config(root, "extract.precision=auto"), BACKBONE)) == len(IDS)
