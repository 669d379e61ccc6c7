"""The motion stream: per frame, an image of how the frame differs from the one before.

A motion image is made for every frame and goes through the same frozen backbone as the
frames themselves; its embeddings are the stream ``<backbone>+motion``, cached as
``<cache>/<backbone>+motion/<video>.h5`` in the contract of :mod:`.store` (attribute
``motion``: the method and its parameters, so a change of either makes the file stale).
This module owns the stream's names, its settings and the images; it imports OpenCV and
NumPy only (no TensorFlow). :func:`mouse_pipeline.video.iter_motion_batches` applies
:func:`motion_image` to each frame while decoding.

Which frames
------------
The motion image of frame ``t`` compares frame ``t - 1`` and frame ``t``, *both cut at
frame t's crop window* and resized to the backbone's input side (what the backbone sees
of frame ``t``). With a crop that follows the animal (``data.crop.mode: pose``), cutting
the two frames at their own windows would add the window's shift to every pixel's
motion (the camera appears to move); cutting both at one window measures the motion in
the video's own coordinates, as full-frame motion cropped afterwards would, at the cost
of one more crop and resize per frame instead of motion over the whole frame. Frame 0
has no previous frame: its motion image is that of a still frame (frame 0 compared with
itself), i.e. zero motion as each method encodes it below.

Methods and their images (``uint8``, three channels)
----------------------------------------------------
``dis``
    Dense optical flow by OpenCV's DIS (``cv2.DISOpticalFlow``, preset ``dis_preset``)
    on the two frames in grey. Flow ``(dx, dy)`` in pixels of the resized frame, from
    frame ``t - 1`` to frame ``t`` (positive ``dx``: moving right, positive ``dy``:
    moving down). Channels: ``R = 128 + flow_scale * dx``, ``G = 128 + flow_scale * dy``,
    ``B = flow_scale * |(dx, dy)|``, each rounded and clipped to 0..255. Zero motion is
    ``(128, 128, 0)``; with the default scale of 8 grey levels per pixel, ``dx`` and
    ``dy`` saturate at +-16 px and the magnitude at 32 px.
``farneback``
    The same channels from ``cv2.calcOpticalFlowFarneback`` (pyramid scale 0.5, 3
    levels, window 15, 3 iterations, polynomial 5 / sigma 1.2: OpenCV's documented
    example values, fixed here).
``diff``
    Per channel, ``diff_gain * |frame_t - frame_{t-1}|`` clipped to 255 (moving edges
    bright, still regions black). Zero motion is ``(0, 0, 0)``. Cheapest, but blind to
    direction.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: Suffix of a motion stream's name: ``resnet50v2+motion`` is resnet50v2 on motion images.
MOTION_SUFFIX = "+motion"
METHODS = ("dis", "farneback", "diff")
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
#: Farneback's parameters (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags).
FARNEBACK_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)


def is_motion_stream(name: str) -> bool:
    """Whether a stream name (an ``extract.backbones`` entry) names a motion stream."""
    return str(name).endswith(MOTION_SUFFIX) and len(str(name)) > len(MOTION_SUFFIX)


def stream_backbone(name: str) -> str:
    """The backbone a stream runs: ``resnet50v2+motion`` -> ``resnet50v2``; others unchanged."""
    return name[:-len(MOTION_SUFFIX)] if is_motion_stream(name) else name


def motion_stream(backbone: str) -> str:
    """The name of a backbone's motion stream: ``resnet50v2`` -> ``resnet50v2+motion``."""
    return f"{backbone}{MOTION_SUFFIX}"


@dataclass(frozen=True)
class MotionSettings:
    """How motion images are made (``extract.motion``; see the module notes).

    Attributes
    ----------
    method
        ``dis``, ``farneback`` or ``diff``.
    dis_preset
        DIS preset: ``ultrafast``, ``fast`` or ``medium`` (``dis`` only).
    flow_scale
        Grey levels per pixel of flow (``dis``, ``farneback``).
    diff_gain
        Factor on the absolute difference (``diff``).
    """

    method: str = "dis"
    dis_preset: str = "fast"
    flow_scale: float = 8.0
    diff_gain: float = 4.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"motion method must be one of {METHODS}, got {self.method!r}")
        if self.dis_preset not in DIS_PRESETS:
            raise ValueError(f"DIS preset must be one of {tuple(DIS_PRESETS)}, got {self.dis_preset!r}")
        if not (self.flow_scale > 0 and self.diff_gain > 0):
            raise ValueError(f"flow_scale and diff_gain must be > 0, got {self.flow_scale}, {self.diff_gain}")

    @classmethod
    def from_config(cls, section: Any) -> MotionSettings:
        """From a config's ``extract.motion`` section (any object with these attributes)."""
        return cls(str(section.method), str(section.dis_preset), float(section.flow_scale),
                   float(section.diff_gain))

    def provenance(self) -> dict[str, Any]:
        """The method and the parameters it uses (those it ignores are left out, so that
        changing them does not make files stale)."""
        if self.method == "dis":
            return {"method": "dis", "preset": self.dis_preset, "flow_scale": self.flow_scale}
        if self.method == "farneback":
            return {"method": "farneback", "params": list(FARNEBACK_PARAMS), "flow_scale": self.flow_scale}
        return {"method": "diff", "gain": self.diff_gain}

    def to_json(self) -> str:
        """:meth:`provenance` as canonical JSON: the ``motion`` attribute of a motion file."""
        return json.dumps(self.provenance(), sort_keys=True, separators=(",", ":"))


_local = threading.local()  # one DIS object per thread and preset (they are not thread-safe)


def _dis(preset: str) -> Any:
    objects = getattr(_local, "dis", None)
    if objects is None:
        objects = _local.dis = {}
    if preset not in objects:
        objects[preset] = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])
    return objects[preset]


def optical_flow(prev: np.ndarray, cur: np.ndarray, settings: MotionSettings) -> np.ndarray:
    """Dense flow ``(H, W, 2)`` float32 from ``prev`` to ``cur`` (RGB ``uint8`` images)."""
    g0 = cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY)
    g1 = cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY)
    if settings.method == "dis":
        return _dis(settings.dis_preset).calc(g0, g1, None)
    if settings.method == "farneback":
        return cv2.calcOpticalFlowFarneback(g0, g1, None, *FARNEBACK_PARAMS)
    raise ValueError(f"method {settings.method!r} computes no optical flow")


def flow_to_image(flow: np.ndarray, scale: float, dst: np.ndarray | None = None) -> np.ndarray:
    """Flow ``(H, W, 2)`` as ``uint8`` RGB: ``128 + scale*dx``, ``128 + scale*dy``, ``scale*|flow|``."""
    out = np.empty(flow.shape[:2] + (3,), np.uint8) if dst is None else dst
    dx, dy = cv2.split(flow)
    # OpenCV's saturating conversions: rounded to the nearest level, clipped to 0..255
    out[..., 0] = cv2.addWeighted(dx, scale, dx, 0.0, 128.0, dtype=cv2.CV_8U)
    out[..., 1] = cv2.addWeighted(dy, scale, dy, 0.0, 128.0, dtype=cv2.CV_8U)
    out[..., 2] = cv2.convertScaleAbs(cv2.magnitude(dx, dy), alpha=scale)
    return out


def motion_image(prev: np.ndarray, cur: np.ndarray, settings: MotionSettings,
                 dst: np.ndarray | None = None) -> np.ndarray:
    """The motion image of ``cur`` after ``prev`` (see the module notes).

    Parameters
    ----------
    prev, cur
        RGB ``uint8`` images ``(H, W, 3)`` of the same shape: the previous frame and this
        one, cut at this frame's crop window. ``prev is cur`` (frame 0) gives zero motion.
    settings
        Method and parameters.
    dst
        Optional ``(H, W, 3)`` ``uint8`` array to write into.

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` ``uint8`` (``dst`` when given).
    """
    if prev.shape != cur.shape or cur.dtype != np.uint8 or cur.ndim != 3 or cur.shape[2] != 3:
        raise ValueError(f"motion_image needs two uint8 (H, W, 3) images of one shape, got "
                         f"{prev.shape} {prev.dtype} and {cur.shape} {cur.dtype}")
    if settings.method == "diff":
        out = cv2.absdiff(cur, prev)
        out = cv2.convertScaleAbs(out, alpha=settings.diff_gain)  # saturates at 255
        if dst is None:
            return out
        dst[...] = out
        return dst
    return flow_to_image(optical_flow(prev, cur, settings), settings.flow_scale, dst)


def still_image(shape: tuple[int, int], settings: MotionSettings) -> np.ndarray:
    """The motion image of no motion (what frame 0 gets): ``(H, W, 3)`` ``uint8``."""
    value = (0, 0, 0) if settings.method == "diff" else (128, 128, 0)
    return np.broadcast_to(np.array(value, np.uint8), (*shape, 3)).copy()
