"""Frames for the review page: the same pixels whatever order they are asked in, cropped as
the run crops them, and the predictions of a ``predict`` folder read back."""

import json

import cv2
import numpy as np
import pytest

from mouse_pipeline.config import Config
from mouse_pipeline.errors import InputError
from mouse_pipeline.review.frames import GRAB_AHEAD, FramePool, FrameReader, crop_for
from mouse_pipeline.review.sources import folder_predictions
from mouse_pipeline.review.store import LabelStore, ReadOnly, runs
from mouse_pipeline.synthetic import generate_dataset
from mouse_pipeline.video import Crop, crop_frame, probe_video

N = 120


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    generate_dataset(root, n_videos=1, n_frames=N, size=64, fps=10, seed=3)
    return root


def sequential_frames(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def decoded(jpeg):
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def test_any_order_of_requests_gives_the_frames_of_a_sequential_read(video):
    path = video / "videos" / "mouse_000.mp4"
    reference = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                 for f in sequential_frames(path)]
    assert len(reference) == N == probe_video(path).n_frames
    reader = FrameReader(path, Crop.none(), N)
    order = [0, 1, 2, N - 1, 5, 5 + GRAB_AHEAD, 3, N // 2, N // 2 + 1, 0, *range(60, 70), 119, 118]
    for i in order:
        reader._cache.clear()  # decode every time, not from the cache
        assert reader.jpeg(i) == reference[i], i
    assert 0 < reader.seeks < len(order)  # jumps seek, the frame after the last one does not
    with pytest.raises(IndexError):
        reader.jpeg(N)
    reader.close()
    assert reader.jpeg(7) == reference[7]  # a closed reader opens the video again


def test_frames_are_cropped_as_the_run_crops_them(video):
    path = video / "videos" / "mouse_000.mp4"
    cfg = Config().replace(**{"data.crop.mode": "pose", "data.crop.pose": str(video / "pose"),
                              "data.crop.size": 32, "data.crop.bodypart": "midbody"})
    crop = crop_for(cfg, path, N)
    assert crop.mode == "pose" and crop.size == 32
    frames = sequential_frames(path)
    pool = FramePool(cfg, {"mouse_000": (path, N)})
    for i in (0, 40, 41):
        img = decoded(pool.jpeg("mouse_000", i))
        expected = crop_frame(frames[i], crop, i)
        assert img.shape == (32, 32, 3)
        assert np.abs(img.astype(int) - expected.astype(int)).mean() < 4  # JPEG's loss only
    with pytest.raises(KeyError):
        pool.jpeg("../mouse_000", 0)
    pool.close()
    box = crop_for(cfg.replace(**{"data.crop.mode": "box", "data.crop.box": [8, 4, 20, 30]}), path, N)
    assert decoded(FrameReader(path, box, N).jpeg(3)).shape == (30, 20, 3)
    with pytest.raises(InputError, match="pose rows"):
        crop_for(cfg, path, N + 5)


def test_a_predict_folder_is_read_back(tmp_path):
    from mouse_pipeline.predict import write_folder_outputs, write_predictions_csv

    behaviors = ("grooming", "rearing")
    rng = np.random.default_rng(0)
    probs = rng.random((30, 2))
    binary = (probs > 0.5).astype(np.int8)
    write_predictions_csv(tmp_path / "new_000_predictions.csv", probs, binary, behaviors, 10.0, "new_000")
    model = {"model": "resnet50v2/lstm", "behaviors": {b: {"threshold": 0.4 + k / 10, "max_gap": 0, "min_len": 1}
                                                       for k, b in enumerate(behaviors)}}
    write_folder_outputs(tmp_path, tmp_path / "run", model, [], [], [
        {"video": "new_000", "source": "/videos/new_000.mp4", "fps": 10.0, "n_frames": 30, "files": []}])
    preds, records = folder_predictions(tmp_path, behaviors)
    p = preds["new_000"]
    assert np.allclose(p.probs, probs, atol=1e-5) and (p.binary == binary).all()
    assert p.thresholds == (0.4, 0.5) and records["new_000"]["source"] == "/videos/new_000.mp4"
    with pytest.raises(InputError, match="not of the run's"):
        folder_predictions(tmp_path, ("grooming", "sniffing"))
    (tmp_path / "predictions.json").write_text(json.dumps({"videos": []}))
    with pytest.raises(InputError, match="behaviors"):
        folder_predictions(tmp_path, behaviors)


def test_a_session_without_a_labels_folder_is_read_only():
    store = LabelStore(None, [], "me")
    with pytest.raises(ReadOnly, match="--out"):
        store.save("v", "original", [{"op": "reviewed", "start": 0, "end": 0}])


def test_runs_are_the_stretches_of_equal_values():
    assert runs(np.array([-1, -1, 0, 1, 1, 0], np.int8)) == [[0, 1, -1], [2, 2, 0], [3, 4, 1], [5, 5, 0]]
    assert runs(np.array([], np.int8)) == []
