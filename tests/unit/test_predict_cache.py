"""predict never replaces another video's embeddings in the cache it extracts into."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from mouse_pipeline.dataset import VideoFile
from mouse_pipeline.errors import InputError
from mouse_pipeline.features.store import cache_path
from mouse_pipeline.predict import refuse_replacing


def _cache_file(cache: Path, stream: str, vid: str, made_from: Path) -> Path:
    path = cache_path(cache, stream, vid)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=np.zeros((4, 2), np.float32))
        f.attrs["video_path"] = str(made_from)
    return path


def test_a_new_video_named_like_a_training_video_is_refused_before_its_cache_file_is_replaced(tmp_path):
    train, new = tmp_path / "train" / "mouse_000.mp4", tmp_path / "new" / "mouse_000.mp4"
    for path, content in ((train, b"the training recording"), (new, b"another recording")):
        path.parent.mkdir()
        path.write_bytes(content)
    cache = tmp_path / "cache"
    kept = _cache_file(cache, "resnet50v2", "mouse_000", train)
    with pytest.raises(InputError, match=r"new/mouse_000.mp4: its cache file .*mouse_000.h5 holds the embeddings "
                                         r"of another video, .*train/mouse_000.mp4; .* \(--cache\)"):
        refuse_replacing(cache, ["resnet50v2"], [VideoFile(new, "mouse_000")])
    assert kept.is_file()
    # the same file, a copy of it, a file no longer there, another stream's folder: nothing to refuse
    refuse_replacing(cache, ["resnet50v2"], [VideoFile(train, "mouse_000")])
    copy = tmp_path / "copy" / "mouse_000.mp4"
    copy.parent.mkdir()
    copy.write_bytes(train.read_bytes())
    refuse_replacing(cache, ["resnet50v2"], [VideoFile(copy, "mouse_000")])
    refuse_replacing(cache, ["mobilenet_v3_small"], [VideoFile(new, "mouse_000")])
    train.unlink()
    refuse_replacing(cache, ["resnet50v2"], [VideoFile(new, "mouse_000")])


def test_a_damaged_cache_file_is_left_to_extract(tmp_path):
    new = tmp_path / "mouse_000.mp4"
    new.write_bytes(b"x")
    path = cache_path(tmp_path / "cache", "resnet50v2", "mouse_000")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not hdf5")
    refuse_replacing(tmp_path / "cache", ["resnet50v2"], [VideoFile(new, "mouse_000")])
