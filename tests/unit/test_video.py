"""Video reading: true frame counts, batches in order, crops with padding, clear errors."""

import logging
import os

import cv2
import numpy as np
import pytest

from mouse_pipeline.errors import InputError
from mouse_pipeline.video import (
    Crop,
    VideoInfo,
    container_fps,
    crop_frame,
    iter_batches,
    probe_video,
    video_fingerprint,
)

W, H = 48, 32


def level(i):
    """Grey level that encodes frame i (steps of 6 survive mp4v compression)."""
    return 20 + 6 * i


def write_video(path, n, fourcc="mp4v", fps=10.0, noise=False):
    """Frame i: blue 200, green level(i), red 50 (BGR as written), or noise."""
    rng = np.random.default_rng(0)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert w.isOpened()
    for i in range(n):
        if noise:
            frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        else:
            frame = np.empty((H, W, 3), np.uint8)
            frame[:] = (200, level(i), 50)
        w.write(frame)
    w.release()
    return path


def decoded_index(rgb_frame):
    return int(round((rgb_frame[..., 1].mean() - 20) / 6))


def test_probe_video_counts_decoded_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", 23)
    info = probe_video(path)
    assert info == VideoInfo(path, 23, 10.0, W, H)
    assert probe_video(str(path)).n_frames == 23


def test_iter_batches_streams_every_frame_once_in_order_as_rgb(tmp_path):
    path = write_video(tmp_path / "v.mp4", 23)
    batches = list(iter_batches(path, 5))
    assert [b.shape for b in batches] == [(5, H, W, 3)] * 4 + [(3, H, W, 3)]
    frames = np.concatenate(batches)
    assert frames.dtype == np.uint8
    assert [decoded_index(f) for f in frames] == list(range(23))
    assert abs(frames[..., 0].mean() - 50) < 8 and abs(frames[..., 2].mean() - 200) < 8  # RGB


def test_iter_batches_crops_then_resizes(tmp_path):
    path = write_video(tmp_path / "v.mp4", 7)
    batches = list(iter_batches(path, 4, Crop("box", box=(-4, 0, 16, 16)), out_size=8))
    assert [b.shape for b in batches] == [(4, 8, 8, 3), (3, 8, 8, 3)]
    # left quarter of each 16 px crop lies outside the frame: black after an area resize
    assert batches[0][:, :, :2].max() == 0
    assert batches[0][:, :, 2:, 2].min() > 190


def test_iter_batches_pose_crop_follows_centres(tmp_path):
    path = write_video(tmp_path / "v.mp4", 6)
    centres = np.array([[W - 1, H - 1]] * 6, dtype=float)  # bottom-right corner
    (batch,) = iter_batches(path, 8, Crop("pose", size=10, centres=centres))
    assert batch.shape == (6, 10, 10, 3)
    assert batch[:, :5, :5].min() > 0 and batch[:, 6:, :].max() == 0 and batch[:, :, 6:].max() == 0


@pytest.mark.parametrize("threads", [2, 5])
def test_frame_threads_give_the_same_batches(tmp_path, threads):
    path = write_video(tmp_path / "v.mp4", 29, noise=True)
    rng = np.random.default_rng(3)
    centres = np.column_stack([rng.uniform(-5, W + 5, 29), rng.uniform(-5, H + 5, 29)])
    for crop, size in ((None, None), (Crop("pose", size=20, centres=centres), 12),
                       (Crop("box", box=(3, 2, 30, 20)), 16)):
        one = list(iter_batches(path, 8, crop, size))
        many = list(iter_batches(path, 8, crop, size, threads=threads))
        assert [b.shape for b in many] == [b.shape for b in one]
        assert all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))


def test_more_frames_than_centres_names_both_counts(tmp_path):
    path = write_video(tmp_path / "v.mp4", 12)
    crop = Crop("pose", size=8, centres=np.full((10, 2), 16.0))
    with pytest.raises(InputError, match=r"v\.mp4: has 12 frames but its pose file has 10 rows"):
        list(iter_batches(path, 4, crop))


def test_crop_frame_box_pads_outside_with_zeros():
    frame = np.arange(1, 5 * 6 + 1, dtype=np.uint8).reshape(5, 6)
    out = crop_frame(frame, Crop("box", box=(4, -1, 4, 3)), 0)
    expected = np.array([[0, 0, 0, 0], [5, 6, 0, 0], [11, 12, 0, 0]], np.uint8)
    np.testing.assert_array_equal(out, expected)
    inside = crop_frame(frame, Crop("box", box=(1, 1, 2, 2)), 0)
    np.testing.assert_array_equal(inside, [[8, 9], [14, 15]])
    far = crop_frame(frame, Crop("box", box=(100, 100, 3, 2)), 0)
    np.testing.assert_array_equal(far, np.zeros((2, 3)))


def test_crop_frame_pose_square_is_centred_and_constant_size():
    frame = np.arange(100, dtype=np.uint8).reshape(10, 10)
    crop = Crop("pose", size=4, centres=np.array([[5.0, 5.0], [0.2, 9.4]]))
    np.testing.assert_array_equal(crop_frame(frame, crop, 0), frame[3:7, 3:7])
    corner = crop_frame(frame, crop, 1)  # square from x -2..1, y 7..10
    assert corner.shape == (4, 4)
    np.testing.assert_array_equal(corner[:3, 2:], frame[7:10, 0:2])
    assert corner[:, :2].max() == 0 and corner[3].max() == 0
    assert crop_frame(frame, Crop.none(), 0) is frame


def test_crop_validates_its_fields():
    with pytest.raises(ValueError, match="crop mode"):
        Crop("circle")
    with pytest.raises(ValueError, match="w, h > 0"):
        Crop("box", box=(0, 0, 0, 5))
    with pytest.raises(ValueError, match="finite"):
        Crop("pose", size=8, centres=np.array([[1.0, np.nan]]))
    c = Crop("pose", size=8, centres=[[1, 2], [3, 4]])
    assert c == Crop("pose", size=8, centres=np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert c != Crop.none() and Crop.none() == Crop()
    assert not c.centres.flags.writeable


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.mp4: video file does not exist"):
        probe_video(tmp_path / "nope.mp4")


def test_directory(tmp_path):
    with pytest.raises(InputError, match="is a folder, expected a video file"):
        probe_video(tmp_path)


def test_text_file_renamed_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not frames\n" * 50)
    with pytest.raises(InputError, match=r"notes\.mp4: OpenCV cannot open this file as a video"):
        probe_video(path)
    with pytest.raises(InputError, match="cannot open this file as a video"):
        next(iter_batches(path, 4))


@pytest.mark.parametrize(("ext", "kind"), [(".png", "PNG"), (".jpg", "JPEG"), (".bmp", "BMP"), (".tiff", "TIFF")])
def test_image_renamed_mp4_is_not_a_one_frame_video(tmp_path, ext, kind):
    image = tmp_path / f"frame{ext}"
    assert cv2.imwrite(str(image), np.full((24, 24, 3), 90, np.uint8))
    path = tmp_path / "mouse.mp4"
    path.write_bytes(image.read_bytes())
    # OpenCV's FFmpeg backend opens it (one frame at 25 fps): refused before it is
    with pytest.raises(InputError, match=rf"mouse\.mp4: is a {kind} image, not a video"):
        probe_video(path)
    with pytest.raises(InputError, match="image, not a video"):
        container_fps(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.touch()
    with pytest.raises(InputError, match=r"empty\.mp4: the video file is empty \(0 bytes\)"):
        probe_video(path)


def test_container_without_frames(tmp_path):
    path = write_video(tmp_path / "zero.mp4", 0)
    assert path.stat().st_size > 0
    with pytest.raises(InputError, match=r"zero\.mp4: OpenCV cannot open"):
        probe_video(path)


def test_truncated_mp4_cannot_be_opened(tmp_path):
    path = write_video(tmp_path / "cut.mp4", 30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the index (moov atom) is at the end: lost
    with pytest.raises(InputError, match=r"cut\.mp4: OpenCV cannot open this file as a video"):
        probe_video(path)


def test_corrupt_frame_midway_is_an_error(tmp_path):
    path = write_video(tmp_path / "bad.mp4", 40, noise=True)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 3000] = bytes(3000)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"bad\.mp4: decoding failed at frame \d+ but later frames exist"):
        probe_video(path)
    with pytest.raises(InputError, match=r"bad\.mp4: decoding failed at frame \d+"):
        list(iter_batches(path, 8))


def test_recording_cut_short_counts_what_decodes(tmp_path, caplog):
    path = write_video(tmp_path / "short.avi", 30, fourcc="MJPG", noise=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # AVI keeps its header: metadata still says 30
    with caplog.at_level(logging.WARNING, logger="mouse_pipeline.video"):
        info = probe_video(path)
    assert 5 < info.n_frames < 30
    assert "container claims 30 frames" in caplog.text
    assert sum(len(b) for b in iter_batches(path, 4)) == info.n_frames


def test_unreadable_file(tmp_path, monkeypatch):
    path = write_video(tmp_path / "locked.mp4", 3)
    path.chmod(0)
    # root (as in CI) reads any file, so the permission check is also driven directly
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(path) else real_access(p, mode))
    with pytest.raises(InputError, match="permission denied"):
        probe_video(path)


def test_video_fingerprint_is_cheap_and_sensitive_to_ends(tmp_path):
    path = tmp_path / "big.bin"
    size = 5 * (1 << 20)
    with open(path, "wb") as fh:
        fh.truncate(size)
    fp = video_fingerprint(path)
    assert set(fp) == {"size", "mtime_ns", "sha256"} and fp["size"] == size
    assert isinstance(fp["mtime_ns"], int) and len(fp["sha256"]) == 64

    def patched(offset):
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(b"\x01")
        sha = video_fingerprint(path)["sha256"]
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(b"\x00")
        return sha

    assert patched(size // 2) == fp["sha256"]  # the middle is never read
    assert patched(10) != fp["sha256"]
    assert patched(size - 1) != fp["sha256"]
    with pytest.raises(InputError, match="cannot read the file"):
        video_fingerprint(tmp_path / "missing.mp4")
