"""Labelled videos: the input's frame count and frame rate, flat streaming, refusals."""

import cv2
import numpy as np
import pytest

from mouse_pipeline.errors import InputError
from mouse_pipeline.overlay import MIN_WIDTH, read_predictions_file, strip_image, write_overlay
from mouse_pipeline.synthetic import generate_dataset
from mouse_pipeline.video import container_fps, iter_batches, probe_video

BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlay")
    generate_dataset(root, n_videos=1, n_frames=45, size=48, fps=7.5, seed=4)
    return root / "videos" / "mouse_000.mp4"


def predictions(n, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, 3)).astype(np.float32)
    return probs, (probs > 0.5).astype(np.int8)


def test_the_overlay_has_the_inputs_frame_count_and_fps(video, tmp_path):
    probs, binary = predictions(45)
    out = write_overlay(video, tmp_path / "v_overlay.mp4", probs, binary, BEHAVIORS, container_fps(video),
                        thresholds=(0.5, 0.4, 0.6))
    src, dst = probe_video(video), probe_video(out)
    assert (dst.n_frames, dst.fps) == (src.n_frames, src.fps) == (45, 7.5)
    assert dst.width >= MIN_WIDTH and dst.height > src.height * (dst.width // src.width)  # frame + panel
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v_overlay.mp4"]


def test_the_overlay_shows_the_video_and_changes_with_the_labels(video, tmp_path):
    n = 45
    probs, binary = np.zeros((n, 3), np.float32), np.zeros((n, 3), np.int8)
    probs[20:, 0], binary[20:, 0] = 0.9, 1
    out = write_overlay(video, tmp_path / "o.mp4", probs, binary, BEHAVIORS, 7.5)
    frames = np.concatenate(list(iter_batches(out, 16)))
    first = next(iter_batches(video, 1))[0]
    scale = frames.shape[2] // first.shape[1]
    top = cv2.resize(first, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    # the image part is the input, scaled (the label text in the top left corner aside)
    assert np.abs(frames[0, 30:top.shape[0], :].astype(int) - top[30:].astype(int)).mean() < 12
    panel = slice(top.shape[0], None)
    assert np.abs(frames[25, panel].astype(int) - frames[5, panel].astype(int)).max() > 100  # the bar grew


def test_predictions_of_another_length_are_refused_and_nothing_is_left(video, tmp_path):
    for n in (44, 46):
        probs, binary = predictions(n)
        with pytest.raises(InputError, match="predictions"):
            write_overlay(video, tmp_path / "o.mp4", probs, binary, BEHAVIORS, 7.5)
    assert list(tmp_path.iterdir()) == []


def test_the_strip_is_the_share_of_predicted_frames_per_column():
    b = np.zeros((100, 2), np.int8)
    b[:50, 0] = 1
    b[75:, 1] = 1
    s = strip_image(b, 4)
    assert s.tolist() == [[1, 1, 0, 0], [0, 0, 0, 1]]
    assert strip_image(b, 1000).shape == (2, 1000)  # more columns than frames


def test_the_predictions_csv_of_predict_is_read_back(tmp_path):
    from mouse_pipeline.predict import write_predictions_csv

    probs, binary = predictions(10)
    write_predictions_csv(tmp_path / "v_predictions.csv", probs, binary, BEHAVIORS, 10.0, "v")
    behaviors, p, b = read_predictions_file(tmp_path / "v_predictions.csv")
    assert behaviors == BEHAVIORS
    np.testing.assert_allclose(p, probs, atol=1e-5)
    assert (b == binary).all()
