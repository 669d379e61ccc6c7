"""Single frames for the review page: decoded by OpenCV, cropped as the run crops, as JPEG.

A :class:`FrameReader` keeps one video open and remembers where its decoder is, so the
next frame (playback) is one ``read``, a frame a little ahead is reached by grabbing
forward, and only a jump seeks (``CAP_PROP_POS_FRAMES``). Recently served frames are kept
encoded. :class:`FramePool` holds a few readers (least recently used closed first), each
behind its own lock: OpenCV captures are not thread-safe, and the server answers requests
from a thread pool.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import cv2

from ..config import Config
from ..errors import InputError
from ..pose import check_inside, find_pose_file, read_pose
from ..video import Crop, _open, crop_frame

#: Frames past the decoder's position reached by grabbing rather than seeking.
GRAB_AHEAD = 48
#: Encoded frames kept per video.
CACHED_FRAMES = 256
#: Videos kept open at once.
OPEN_VIDEOS = 4
JPEG_QUALITY = 90


def crop_for(cfg: Config, video: Path, n_frames: int) -> Crop:
    """The crop the run applies to ``video`` (``data.crop``), as extraction builds it."""
    c = cfg.data.crop
    if c.mode == "box":
        return Crop("box", box=tuple(c.box))
    if c.mode == "pose":
        pose_file = find_pose_file(c.pose, video.stem)
        centres = read_pose(pose_file, c.bodypart, c.min_likelihood, individual=c.individual)
        if len(centres) != n_frames:
            raise InputError(f"{pose_file}: {len(centres)} pose rows but {video} has {n_frames} frames; "
                             "use the pose file made from this video")
        cap = _open(video)
        try:
            width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        finally:
            cap.release()
        check_inside(centres, width, height, pose_file, video=video)
        return Crop("pose", size=c.size, centres=centres)
    return Crop.none()


class FrameReader:
    """One open video: frame ``i`` as JPEG bytes, cropped (see the module docstring)."""

    def __init__(self, path: Path, crop: Crop, n_frames: int) -> None:
        self.path, self.crop, self.n_frames = Path(path), crop, n_frames
        self._cap: cv2.VideoCapture | None = _open(self.path)
        self._next = 0  # the frame the next read() returns
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self.lock = threading.Lock()
        self.seeks = 0  # how many times the decoder was repositioned (tests, logs)

    def close(self) -> None:
        """Release the capture; a later request opens the video again."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def jpeg(self, index: int) -> bytes:
        """Frame ``index`` (0-based) as JPEG; IndexError outside the video."""
        if not 0 <= index < self.n_frames:
            raise IndexError(index)
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        frame = self._decode(index)
        img = crop_frame(frame, self.crop, index)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise InputError(f"{self.path}: frame {index} could not be encoded as JPEG")
        data = buf.tobytes()
        self._cache[index] = data
        while len(self._cache) > CACHED_FRAMES:
            self._cache.popitem(last=False)
        return data

    def _decode(self, index: int):
        if self._cap is None:  # closed by the pool while this request waited
            self._cap, self._next = _open(self.path), 0
        if not self._next <= index <= self._next + GRAB_AHEAD:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._next = index
            self.seeks += 1
        while self._next < index:
            if not self._cap.grab():
                raise InputError(f"{self.path}: decoding failed at frame {self._next}")
            self._next += 1
        ok, frame = self._cap.read()
        if not ok:
            self._next = -GRAB_AHEAD - 1  # unknown position: the next request seeks
            raise InputError(f"{self.path}: frame {index} could not be decoded")
        self._next = index + 1
        return frame


class FramePool:
    """Readers of the session's videos, opened on first use, at most :data:`OPEN_VIDEOS` open."""

    def __init__(self, cfg: Config, videos: dict[str, tuple[Path, int]]) -> None:
        self._cfg = cfg
        self._videos = videos  # id -> (path, n_frames): the allow-list
        self._open: OrderedDict[str, FrameReader] = OrderedDict()
        self._lock = threading.Lock()

    def reader(self, video_id: str) -> FrameReader:
        """The open reader of a known video (KeyError for any other id)."""
        path, n_frames = self._videos[video_id]
        with self._lock:
            reader = self._open.get(video_id)
            if reader is None:
                reader = FrameReader(path, crop_for(self._cfg, path, n_frames), n_frames)
                self._open[video_id] = reader
                while len(self._open) > OPEN_VIDEOS:
                    _, old = self._open.popitem(last=False)
                    with old.lock:
                        old.close()
            self._open.move_to_end(video_id)
            return reader

    def jpeg(self, video_id: str, index: int) -> bytes:
        reader = self.reader(video_id)
        with reader.lock:
            return reader.jpeg(index)

    def close(self) -> None:
        with self._lock:
            for reader in self._open.values():
                with reader.lock:
                    reader.close()
            self._open.clear()
