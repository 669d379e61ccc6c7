"""Motion images (features/motion.py) and their streaming (video.iter_motion_batches); no TensorFlow."""

import json

import cv2
import numpy as np
import pytest

from mouse_pipeline.errors import ConfigError
from mouse_pipeline.features.motion import (
    MotionSettings,
    is_motion_stream,
    motion_image,
    motion_stream,
    still_image,
    stream_backbone,
)
from mouse_pipeline.features.store import cache_path
from mouse_pipeline.video import Crop, iter_batches, iter_motion_batches

FLOWS = [MotionSettings("dis", "fast"), MotionSettings("dis", "ultrafast"), MotionSettings("dis", "medium"),
         MotionSettings("farneback")]
S, P = 64, 16  # frame side, patch side


def textured(shape, seed, sigma):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), sigma)


BACKGROUND = textured((S, S, 3), 0, 2.0)
PATCH = textured((P, P, 3), 1, 1.0)


def frame_with_patch(x):
    img = BACKGROUND.copy()
    img[24:24 + P, x:x + P] = PATCH
    return img


def make(settings):
    return lambda prev, cur, dst: motion_image(prev, cur, settings, dst)


@pytest.mark.parametrize("settings", FLOWS, ids=lambda s: f"{s.method}-{s.dis_preset}")
def test_a_patch_moving_right_has_positive_x_flow_there_and_none_elsewhere(settings):
    prev, cur = frame_with_patch(20), frame_with_patch(22)  # 2 px to the right
    img = motion_image(prev, cur, settings).astype(float)
    dx, dy, mag = (img[..., c] - (128, 128, 0)[c] for c in range(3))
    patch = (slice(26, 24 + P - 2), slice(23, 20 + P - 3))  # inside the patch, off its edges
    assert dx[patch].mean() / settings.flow_scale > 1.0  # about 2 px to the right
    assert abs(dy[patch].mean()) / settings.flow_scale < 0.5
    assert mag[patch].mean() / settings.flow_scale > 1.0
    far = (slice(0, 10), slice(0, S))  # background rows far above the patch
    assert np.abs(dx[far]).mean() / settings.flow_scale < 0.3 and mag[far].mean() / settings.flow_scale < 0.3


@pytest.mark.parametrize("settings", [*FLOWS, MotionSettings("diff")], ids=lambda s: s.method)
def test_still_frames_give_the_image_of_no_motion(settings):
    frame = frame_with_patch(20)
    np.testing.assert_array_equal(motion_image(frame, frame.copy(), settings), still_image((S, S), settings))
    assert still_image((2, 2), settings)[0, 0].tolist() == ([0, 0, 0] if settings.method == "diff" else [128, 128, 0])


def test_diff_is_the_scaled_absolute_difference_where_the_patch_moved():
    settings = MotionSettings("diff", diff_gain=3.0)
    prev, cur = frame_with_patch(20), frame_with_patch(22)
    img = motion_image(prev, cur, settings)
    expected = np.clip(3.0 * np.abs(cur.astype(int) - prev.astype(int)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(img, expected)
    changed = img.max(axis=2) > 0
    assert changed[24:24 + P, 20:22 + P].any()  # in the patch's old and new place
    assert not changed[:24].any() and not changed[24 + P:].any()
    assert not changed[:, :20].any() and not changed[:, 22 + P:].any()  # and nowhere else


def test_flow_scale_and_clipping():
    prev, cur = frame_with_patch(20), frame_with_patch(22)
    small = motion_image(prev, cur, MotionSettings("dis", flow_scale=4.0)).astype(float)
    big = motion_image(prev, cur, MotionSettings("dis", flow_scale=200.0))
    patch = (slice(26, 24 + P - 2), slice(23, 20 + P - 3))
    assert 128 + 4 < small[patch][..., 0].mean() < 128 + 4 * 4  # ~2 px at 4 levels per px
    assert (big[patch][..., 0] == 255).mean() > 0.5 and (big[patch][..., 2] == 255).mean() > 0.5  # clipped


def test_settings_provenance_records_the_method_and_only_its_parameters():
    assert MotionSettings("diff", "fast").to_json() == MotionSettings("diff", "medium").to_json()
    assert json.loads(MotionSettings("diff", diff_gain=2.0).to_json()) == {"method": "diff", "gain": 2.0}
    assert json.loads(MotionSettings().to_json()) == {"method": "dis", "preset": "fast", "flow_scale": 8.0}
    assert MotionSettings("dis", "fast").to_json() != MotionSettings("dis", "medium").to_json()
    assert json.loads(MotionSettings("farneback").to_json())["method"] == "farneback"
    with pytest.raises(ValueError, match="motion method must be one of"):
        MotionSettings("tvl1")
    with pytest.raises(ValueError, match="two uint8"):
        motion_image(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8), MotionSettings())


def test_stream_names_and_their_cache_folders(tmp_path):
    from mouse_pipeline.backbones import get_spec, resolve_input_size

    assert motion_stream("resnet50v2") == "resnet50v2+motion" and is_motion_stream("resnet50v2+motion")
    assert stream_backbone("resnet50v2+motion") == "resnet50v2" and stream_backbone("resnet50v2") == "resnet50v2"
    assert not is_motion_stream("resnet50v2") and not is_motion_stream("+motion")
    assert get_spec("mobilenet_v3_small+motion") is get_spec("mobilenet_v3_small")
    assert resolve_input_size("inception_resnet_v2+motion") == 299
    with pytest.raises(ConfigError, match=r"unknown backbone 'vgg99' of the motion stream 'vgg99\+motion'; a motion "
                                          r"stream is <backbone>\+motion, the backbone one of resnet50v2, "):
        get_spec("vgg99+motion")
    assert cache_path(tmp_path, "resnet50v2+motion", "m1") == tmp_path / "resnet50v2+motion" / "m1.h5"
    assert cache_path(tmp_path, "../x", "m1").parent.name == ".._x"  # still one folder inside the cache


# --------------------------------------------------------------------------- streaming


def write_video(path, frames):
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, frames[0].shape[1::-1])
    for f in frames:
        out.write(f)
    out.release()


def decoded(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


@pytest.fixture
def moving_video(tmp_path):
    path = tmp_path / "moving.avi"
    write_video(path, [frame_with_patch(8 + 2 * t) for t in range(11)])
    return path


@pytest.mark.parametrize("threads", [1, 3])
def test_streamed_motion_compares_each_frame_with_the_one_before_and_frame_0_is_still(moving_video, threads):
    settings = MotionSettings("diff")
    pairs = list(iter_motion_batches(moving_video, 4, None, 32, make(settings), threads=threads))
    assert [len(rgb) for rgb, _ in pairs] == [4, 4, 3] and [len(m) for _, m in pairs] == [4, 4, 3]
    rgb = np.concatenate([r for r, _ in pairs])
    moving = np.concatenate([m for _, m in pairs])
    np.testing.assert_array_equal(rgb, np.concatenate(list(iter_batches(moving_video, 4, None, 32))))
    np.testing.assert_array_equal(moving[0], still_image((32, 32), settings))  # the first-frame rule
    for t in range(1, len(rgb)):
        np.testing.assert_array_equal(moving[t], motion_image(rgb[t - 1], rgb[t], settings))
    assert all(moving[t].max() > 0 for t in range(1, len(rgb)))  # the patch moves in every frame
    only = list(iter_motion_batches(moving_video, 4, None, 32, make(settings), rgb=False, threads=threads))
    assert all(r is None for r, _ in only)
    np.testing.assert_array_equal(np.concatenate([m for _, m in only]), moving)


def test_a_crop_window_that_moves_adds_no_motion_of_its_own(tmp_path):
    # a still video seen through a pose crop whose centre jumps every frame: the motion of
    # frame t is measured with frame t-1 cut at frame t's window, so it stays zero
    path = tmp_path / "still.avi"
    write_video(path, [frame_with_patch(20)] * 8)
    centres = np.array([[24 + 3 * t, 30 + (t % 2) * 4] for t in range(8)], float)
    crop = Crop("pose", size=24, centres=centres)
    for settings in (MotionSettings("diff"), MotionSettings("dis")):
        (_, moving), = iter_motion_batches(path, 8, crop, 24, make(settings))
        np.testing.assert_array_equal(moving, np.broadcast_to(still_image((24, 24), settings), moving.shape))
        # the two crops themselves differ: cutting each frame at its own window would have moved
        (rgb,) = iter_batches(path, 8, crop, 24)
        assert motion_image(rgb[0], rgb[1], settings).astype(int).std() > 1


def test_pose_crop_motion_is_the_previous_frame_cut_at_this_frames_window(moving_video):
    frames = decoded(moving_video)
    centres = np.array([[30 + t, 32 - t] for t in range(len(frames))], float)
    crop = Crop("pose", size=20, centres=centres)
    settings = MotionSettings("diff", diff_gain=1.0)
    moving = np.concatenate([m for _, m in iter_motion_batches(moving_video, 5, crop, 20, make(settings))])
    for t in range(1, len(frames)):
        x, y = 30 + t - 10, 32 - t - 10
        cur = frames[t][y:y + 20, x:x + 20, ::-1]
        before = frames[t - 1][y:y + 20, x:x + 20, ::-1]
        np.testing.assert_array_equal(moving[t], cv2.absdiff(np.ascontiguousarray(cur), np.ascontiguousarray(before)))
