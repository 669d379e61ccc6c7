"""Reading videos with OpenCV: true frame counts, fingerprints, crops, batched RGB frames.

Container metadata (``CAP_PROP_FRAME_COUNT``) is often wrong, so :func:`probe_video`
decodes the whole file to count frames. :func:`iter_batches` streams RGB ``uint8``
batches, cropped and resized, never holding more than one batch of a video in memory;
:func:`iter_motion_batches` streams, from the same one decoding, each frame's motion image
beside it (the image itself is :mod:`mouse_pipeline.features.motion`'s business).
Every problem with a file is an :class:`~mouse_pipeline.errors.InputError` naming it.

When decoding stops early
-------------------------
OpenCV reports a damaged frame and the end of the stream the same way: ``read()``
returns False. When that happens before the frame count the container claims, the
reader seeks to a few later frames. If one of them decodes, frames exist beyond a frame
that could not be decoded: the file is corrupt and an ``InputError`` names the frame.
If none decodes, the file simply ends early (a recording cut short, or metadata that
overstates the length): that is not an error, the decoded count is the truth, and a
warning says how many frames the container claimed. An ``.mp4`` cut short usually
loses its index (``moov`` atom) and cannot be opened at all, which is an error.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .video_crop import Crop, crop_frame

log = logging.getLogger(__name__)

_HASH_BYTES = 1 << 20  # fingerprint: first and last MiB
_SEEK_PROBES = 4  # later frames tried when decoding stops before the claimed count
#: ``motion(prev, cur, dst)``: writes the motion image of ``cur`` after ``prev`` into ``dst``.
MotionFn = Callable[[np.ndarray, np.ndarray, np.ndarray], object]


@dataclass(frozen=True)
class VideoInfo:
    """What a video is: its true (decoded) frame count, frame rate and size."""

    path: Path
    n_frames: int
    fps: float
    width: int
    height: int


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: video file does not exist; check data.videos")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a video file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot read the video file (permission denied); fix its permissions")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the video file is empty (0 bytes); re-copy or remove it")


#: File signatures of still images, which OpenCV's FFmpeg backend opens as a one-frame "video".
_IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF",
                     b"GIF89a": "GIF", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def _refuse_image(path: Path) -> None:
    """InputError when a file named as a video is a still image (a renamed PNG, say)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return  # _check_file and OpenCV say what is wrong with the file
    for signature, kind in _IMAGE_SIGNATURES.items():
        if head.startswith(signature):
            raise InputError(f"{path}: is a {kind} image, not a video (renamed?); use the video file")


def _open(path: Path) -> cv2.VideoCapture:
    _check_file(path)
    _refuse_image(path)
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(f"{path}: OpenCV cannot open this file as a video (not a video, "
                         "truncated, or without frames); re-copy or re-encode it")
    return cap


def _claimed_frames(cap: cv2.VideoCapture) -> int:
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(n) if math.isfinite(n) and n > 0 else 0


def _check_stopped_early(cap: cv2.VideoCapture, path: Path, n: int, claimed: int) -> None:
    """Decoding stopped after ``n`` frames: raise if later frames exist (a corrupt frame)."""
    if claimed <= n:
        return
    gap = claimed - 1 - n  # frames claimed after the one that failed
    targets = sorted({claimed - 1 - gap * k // _SEEK_PROBES for k in range(_SEEK_PROBES)})
    for target in targets[::-1]:  # from the end: frames there decode past any damage
        if target <= n:
            continue
        if cap.set(cv2.CAP_PROP_POS_FRAMES, target) and cap.grab():
            raise InputError(f"{path}: decoding failed at frame {n} but later frames exist "
                             "(the file is corrupt); re-encode or re-copy it")
    log.warning("%s: container claims %d frames, only %d decode (file ends early); using %d",
                path, claimed, n, n)


def _grab(cap: cv2.VideoCapture, path: Path, index: int) -> bool:
    try:
        return cap.grab()
    except cv2.error as exc:
        raise InputError(f"{path}: decoding failed at frame {index} ({exc}); re-encode "
                         "or re-copy it") from None


def container_fps(path: str | Path) -> float:
    """The frame rate a video's container records, without decoding it.

    Raises
    ------
    InputError
        The file cannot be opened as a video, or records no usable frame rate.
    """
    path = Path(path)
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"{path}: the container records no frame rate (fps {fps}); "
                         "re-encode it with a frame rate (ffmpeg -r)")
    return fps


def probe_video(path: str | Path) -> VideoInfo:
    """Decode a whole video once to learn its true frame count, fps and size.

    Parameters
    ----------
    path
        Video file.

    Returns
    -------
    VideoInfo
        ``n_frames`` is the number of frames that decode, whatever the container claims.

    Raises
    ------
    InputError
        Missing, a folder, unreadable, empty, not a video, no frame rate, zero frames,
        or a frame that fails to decode before the end (see the module notes).
    """
    path = Path(path)
    cap = _open(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not math.isfinite(fps) or fps <= 0:
            raise InputError(f"{path}: the container records no frame rate (fps {fps}); "
                             "re-encode it with a frame rate (ffmpeg -r)")
        claimed = _claimed_frames(cap)
        n, width, height = 0, 0, 0
        while _grab(cap, path, n):
            if n == 0:
                ok, frame = cap.retrieve()
                if not ok:
                    raise InputError(f"{path}: decoding failed at frame 0; re-encode or re-copy it")
                height, width = frame.shape[:2]
            n += 1
        if n == 0:
            raise InputError(f"{path}: no frame could be decoded (empty, corrupt or not a "
                             "video); re-copy or re-encode it")
        _check_stopped_early(cap, path, n, claimed)
    finally:
        cap.release()
    if claimed and claimed < n:
        log.info("%s: container claims %d frames, %d decode (using %d)", path, claimed, n, n)
    return VideoInfo(path, n, fps, width, height)


def video_fingerprint(path: str | Path) -> dict:
    """Cheap identity of a file: size, mtime and a hash of its first and last MiB.

    Parameters
    ----------
    path
        Any file (videos, pose files).

    Returns
    -------
    dict
        ``size`` (bytes), ``mtime_ns`` and ``sha256``: hex digest of the first MiB, the
        last MiB (when the file is longer than one) and the size. Reads at most 2 MiB.
    """
    path = Path(path)
    try:
        st = path.stat()
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            h.update(fh.read(_HASH_BYTES))
            if st.st_size > _HASH_BYTES:
                fh.seek(max(st.st_size - _HASH_BYTES, _HASH_BYTES))
                h.update(fh.read(_HASH_BYTES))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror}); check it exists "
                         "and is readable") from None
    h.update(str(st.st_size).encode())
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256": h.hexdigest()}


def same_video(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are one video file, or copies of it (the same size and first and
    last MiB: :func:`video_fingerprint`)."""
    a, b = Path(a), Path(b)
    return os.path.samefile(a, b) or video_fingerprint(a)["sha256"] == video_fingerprint(b)["sha256"]


def _out_shape(frame: np.ndarray, crop: Crop | None, out_size: int | None) -> tuple[int, int, int]:
    """Shape of one frame as :func:`iter_batches` yields it."""
    if out_size is not None:
        return out_size, out_size, 3
    if crop is not None and crop.mode == "box":
        return crop.box[3], crop.box[2], 3
    if crop is not None and crop.mode == "pose":
        return crop.size, crop.size, 3
    return frame.shape[0], frame.shape[1], 3


def _to_rgb(frame: np.ndarray, crop: Crop | None, index: int, out_size: int | None,
            dst: np.ndarray) -> None:
    """Crop, resize and convert one BGR frame to RGB, written into ``dst``."""
    img = crop_frame(frame, crop, index)
    if out_size is not None and img.shape[:2] != (out_size, out_size):
        img = cv2.resize(img, (out_size, out_size), interpolation=cv2.INTER_AREA)
    cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=dst)


def iter_batches(path: str | Path, batch_size: int, crop: Crop | None = None,
                 out_size: int | None = None, threads: int = 1) -> Iterator[np.ndarray]:
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
    threads
        Threads that crop, resize and colour-convert frames while this one decodes the
        next (decoding a stream is sequential; the per-frame work is not, and OpenCV
        releases the GIL). 1: all in this thread. The batches are the same either way.

    Yields
    ------
    np.ndarray
        A batch of consecutive frames; together the batches hold every frame once.

    Raises
    ------
    InputError
        The file cannot be opened, a frame fails to decode before the end, or the video
        has more frames than the crop has centres.
    """
    with closing(_stream(Path(path), batch_size, crop, out_size, threads, True, None)) as batches:
        for rgb, _ in batches:
            yield rgb


def iter_motion_batches(path: str | Path, batch_size: int, crop: Crop | None, out_size: int | None,
                        motion: MotionFn, rgb: bool = True,
                        threads: int = 1) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
    """Stream ``(rgb, motion)`` batches from one decoding: frames and their motion images.

    Like :func:`iter_batches`, plus, per frame ``t``, ``motion(prev, cur, dst)`` where
    ``cur`` is frame ``t`` as :func:`iter_batches` yields it and ``prev`` is frame ``t - 1``
    cut at frame t's crop window and resized the same way (so a crop window that moves
    adds no motion of its own); for frame 0, ``prev`` is ``cur`` itself (no previous
    frame: no motion). ``dst`` is that frame's row of the motion batch.

    Parameters
    ----------
    path, batch_size, crop, out_size, threads
        As for :func:`iter_batches`.
    motion
        Writes the motion image of ``cur`` after ``prev`` into ``dst`` (e.g.
        :func:`mouse_pipeline.features.motion.motion_image` with its settings bound).
    rgb
        Also yield the RGB batches (False: ``None`` in their place, decoded once either way).

    Yields
    ------
    tuple of (np.ndarray or None, np.ndarray)
        The RGB batch (or None) and the motion batch ``(B, H, W, 3)`` ``uint8`` of the
        same frames.

    Raises
    ------
    InputError
        As :func:`iter_batches`.
    """
    yield from _stream(Path(path), batch_size, crop, out_size, threads, rgb, motion)


def _convert(frame: np.ndarray, prev: np.ndarray | None, prev_img: np.ndarray | None, crop: Crop | None,
             index: int, out_size: int | None, rgb_dst: np.ndarray | None, motion: MotionFn | None,
             motion_dst: np.ndarray | None) -> np.ndarray | None:
    """One frame's RGB image (into ``rgb_dst``) and motion image (into ``motion_dst``).

    ``prev`` is the previous decoded frame (None for frame 0), ``prev_img`` that frame
    already cut and converted at *this* frame's window when the caller has it (a crop
    window that does not move: the previous frame's own image), else None. Returns this
    frame's RGB image when a motion image was made (None otherwise).
    """
    if motion is None:
        _to_rgb(frame, crop, index, out_size, rgb_dst)
        return None
    cur = rgb_dst if rgb_dst is not None else np.empty_like(motion_dst)
    _to_rgb(frame, crop, index, out_size, cur)
    before = cur
    if prev_img is not None:
        before = prev_img
    elif prev is not None:  # the previous frame, cut at this frame's window
        before = np.empty_like(cur)
        _to_rgb(prev, crop, index, out_size, before)
    motion(before, cur, motion_dst)
    return cur


def _refuse_beyond_centres(cap: cv2.VideoCapture, path: Path, index: int, n_centres: int) -> None:
    """Frame ``index`` has no crop centre: count the frames left and say both numbers."""
    total = index + 1
    while _grab(cap, path, total):
        total += 1
    raise InputError(f"{path}: has {total} frames but its pose file has {n_centres} "
                     "rows; use the pose file made from this video")


def _stream(path: Path, batch_size: int, crop: Crop | None, out_size: int | None, threads: int,
            rgb: bool, motion: MotionFn | None) -> Iterator[tuple[np.ndarray | None, np.ndarray | None]]:
    """The one decoding loop of :func:`iter_batches` and :func:`iter_motion_batches`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not rgb and motion is None:
        raise ValueError("nothing to stream: neither RGB nor motion batches asked for")
    cap = _open(path)
    n_centres = len(crop.centres) if crop is not None and crop.centres is not None else None
    pool = ThreadPoolExecutor(threads, thread_name_prefix="frames") if threads > 1 else None
    inflight: deque[Future] = deque()  # frames being converted, oldest first (bounded)

    def settle(limit: int) -> None:
        while len(inflight) > limit:
            inflight.popleft().result()

    batch: np.ndarray | None = None
    moving: np.ndarray | None = None
    prev: np.ndarray | None = None
    prev_img: np.ndarray | None = None  # the previous frame's image, reused when the window is fixed
    reuse = motion is not None and pool is None and (crop is None or crop.mode != "pose")
    filled = index = 0
    try:
        claimed = _claimed_frames(cap)
        while _grab(cap, path, index):
            ok, frame = cap.retrieve()
            if not ok:
                raise InputError(f"{path}: decoding failed at frame {index}; re-encode or re-copy it")
            if n_centres is not None and index >= n_centres:
                _refuse_beyond_centres(cap, path, index, n_centres)
            if filled == 0:
                shape = (batch_size, *_out_shape(frame, crop, out_size))
                batch = np.empty(shape, np.uint8) if rgb else None
                moving = np.empty(shape, np.uint8) if motion is not None else None
            args = (frame, prev, prev_img, crop, index, out_size, None if batch is None else batch[filled],
                    motion, None if moving is None else moving[filled])
            if pool is None:
                cur = _convert(*args)
                prev_img = cur if reuse else None
            else:
                inflight.append(pool.submit(_convert, *args))
                settle(2 * threads)  # at most this many decoded frames wait in memory
            if motion is not None:
                prev = frame  # a new array per retrieve(): safe to keep while converting
            index += 1
            filled += 1
            if filled == batch_size:
                settle(0)
                yield batch, moving
                batch, moving, filled = None, None, 0
        if index == 0:
            raise InputError(f"{path}: no frame could be decoded (empty, corrupt or not a "
                             "video); re-copy or re-encode it")
        _check_stopped_early(cap, path, index, claimed)
        if filled:
            settle(0)
            yield (None if batch is None else batch[:filled]), (None if moving is None else moving[:filled])
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        cap.release()
