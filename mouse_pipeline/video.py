"""Reading videos with OpenCV: true frame counts, fingerprints, crops, batched RGB frames.

Container metadata (``CAP_PROP_FRAME_COUNT``) is often wrong, so :func:`probe_video`
decodes the whole file to count frames. :func:`iter_batches` streams RGB ``uint8``
batches, cropped and resized, never holding more than one batch of a video in memory.
Every problem with a file is an :class:`~mouse_pipeline.errors.InputError` naming it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

_HASH_BYTES = 1 << 20  # fingerprint: first and last MiB


@dataclass(frozen=True)
class VideoInfo:
    """What a video is: its true (decoded) frame count, frame rate and size."""

    path: Path
    n_frames: int
    fps: float
    width: int
    height: int


@dataclass(frozen=True)
class Crop:
    """How frames are cropped: ``none``, a fixed ``box`` (x, y, w, h), or a ``pose`` square.

    For ``pose``, ``centres`` holds one (x, y) per frame and ``size`` is the square's side.
    """

    mode: str = "none"
    box: tuple[int, int, int, int] | None = None
    size: int | None = None
    centres: np.ndarray | None = None

    @classmethod
    def none(cls) -> Crop:
        return cls()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: video file does not exist; check data.videos")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a video file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot read the video file (permission denied); fix its permissions")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the video file is empty (0 bytes); re-copy or remove it")


def _open(path: Path) -> cv2.VideoCapture:
    _check_file(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{path}: OpenCV cannot open this file as a video; is it a video "
                         "(mp4/avi/...) and not truncated?")
    return cap


def probe_video(path: str | Path) -> VideoInfo:
    """Decode a whole video once to learn its true frame count, fps and size.

    Raises
    ------
    InputError
        Missing, unreadable, not a video, zero frames, or no frame rate.
    """
    path = Path(path)
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        n, width, height = 0, 0, 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if n == 0:
                height, width = frame.shape[:2]
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise InputError(f"{path}: no frame could be decoded (empty, corrupt or not a video)")
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"{path}: the container records no frame rate; set data.fps in the config")
    if claimed and claimed != n:
        log.info("%s: container claims %d frames, %d decoded (using %d)", path.name, claimed, n, n)
    return VideoInfo(path, n, fps, width, height)


def video_fingerprint(path: str | Path) -> dict:
    """Cheap identity of a video file: size, mtime and a hash of its first and last MiB."""
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(_HASH_BYTES))
        if st.st_size > _HASH_BYTES:
            fh.seek(max(st.st_size - _HASH_BYTES, _HASH_BYTES))
            h.update(fh.read(_HASH_BYTES))
    h.update(str(st.st_size).encode())
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256": h.hexdigest()}


def crop_frame(frame: np.ndarray, crop: Crop | None, index: int) -> np.ndarray:
    """Crop one frame; regions outside the frame are zero (black), so the size is constant."""
    if crop is None or crop.mode == "none":
        return frame
    if crop.mode == "box":
        x, y, w, h = crop.box
    elif crop.mode == "pose":
        cx, cy = crop.centres[index]
        w = h = int(crop.size)
        x, y = int(round(cx - w / 2)), int(round(cy - h / 2))
    else:
        raise ValueError(f"unknown crop mode {crop.mode!r}")
    fh, fw = frame.shape[:2]
    out = np.zeros((h, w) + frame.shape[2:], dtype=frame.dtype)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
    if x1 > x0 and y1 > y0:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = frame[y0:y1, x0:x1]
    return out


def iter_batches(path: str | Path, batch_size: int, crop: Crop | None = None,
                 out_size: int | None = None) -> Iterator[np.ndarray]:
    """Stream RGB ``uint8`` batches ``(B, H, W, 3)``: decoded, cropped, resized, in order.

    Parameters
    ----------
    path
        Video file.
    batch_size
        Frames per batch (the last batch may be shorter).
    crop
        How to crop each frame (None: whole frame).
    out_size
        Resize every (cropped) frame to ``out_size`` x ``out_size`` (area interpolation).
    """
    path = Path(path)
    cap = _open(path)
    batch: list[np.ndarray] = []
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if crop is not None and crop.centres is not None and index >= len(crop.centres):
                raise InputError(f"{path}: has more frames than its pose file has rows "
                                 f"({len(crop.centres)}); use the pose file of this video")
            img = crop_frame(frame, crop, index)
            if out_size is not None and img.shape[:2] != (out_size, out_size):
                img = cv2.resize(img, (out_size, out_size), interpolation=cv2.INTER_AREA)
            batch.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            index += 1
            if len(batch) == batch_size:
                yield np.stack(batch)
                batch = []
        if batch:
            yield np.stack(batch)
    except cv2.error as exc:
        raise InputError(f"{path}: decoding failed at frame {index}: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    finally:
        cap.release()
    if index == 0:
        raise InputError(f"{path}: no frame could be decoded (empty, corrupt or not a video)")
