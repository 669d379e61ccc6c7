"""How frames are cropped: none, a fixed box, or a square that follows a pose body part.

:class:`Crop` says how; :func:`crop_frame` cuts one frame (regions outside the frame are
black, so every crop of a video has the same size). :mod:`mouse_pipeline.video` applies
them while it streams a video's frames, and re-exports both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_CROP_MODES = ("none", "box", "pose")


@dataclass(frozen=True, eq=False)
class Crop:
    """How frames are cropped: ``none``, a fixed ``box`` (x, y, w, h), or a ``pose`` square.

    For ``pose``, ``centres`` holds one (x, y) per frame (a read-only float64 copy is
    kept) and ``size`` is the side of the square. Crops compare equal by value.
    """

    mode: str = "none"
    box: tuple[int, int, int, int] | None = None
    size: int | None = None
    centres: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mode not in _CROP_MODES:
            raise ValueError(f"crop mode must be one of {_CROP_MODES}, got {self.mode!r}")
        if self.mode == "box":
            box = tuple(int(v) for v in (self.box or ()))
            if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
                raise ValueError(f"a box crop needs (x, y, w, h) with w, h > 0, got {self.box}")
            object.__setattr__(self, "box", box)
        if self.mode == "pose":
            c = np.array(self.centres if self.centres is not None else [], dtype=np.float64)
            if c.ndim != 2 or c.shape[1] != 2 or not np.isfinite(c).all():
                raise ValueError(f"a pose crop needs finite (T, 2) centres, got shape {c.shape}")
            if self.size is None or int(self.size) <= 0:
                raise ValueError(f"a pose crop needs a positive size, got {self.size}")
            c.setflags(write=False)
            object.__setattr__(self, "centres", c)
            object.__setattr__(self, "size", int(self.size))

    @classmethod
    def none(cls) -> Crop:
        """No crop: whole frames."""
        return cls()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Crop):
            return NotImplemented
        same_centres = (self.centres is None and other.centres is None) or (
            self.centres is not None and other.centres is not None
            and np.array_equal(self.centres, other.centres))
        return (self.mode, self.box, self.size) == (other.mode, other.box, other.size) and same_centres

    __hash__ = None  # mutable-looking array inside: not hashable


def crop_frame(frame: np.ndarray, crop: Crop | None, index: int) -> np.ndarray:
    """Crop one frame; regions outside the frame are zero (black), so the size is constant.

    Parameters
    ----------
    frame
        ``(H, W)`` or ``(H, W, C)`` image.
    crop
        The crop (None or mode ``none``: the frame itself).
    index
        Frame number, to pick the centre of a ``pose`` crop.

    Returns
    -------
    np.ndarray
        ``(h, w, ...)`` of the box, or ``(size, size, ...)`` centred on ``centres[index]``.
    """
    if crop is None or crop.mode == "none":
        return frame
    if crop.mode == "box":
        x, y, w, h = crop.box
    else:
        cx, cy = crop.centres[index]
        w = h = crop.size
        x, y = int(math.floor(cx - w / 2 + 0.5)), int(math.floor(cy - h / 2 + 0.5))
    fh, fw = frame.shape[:2]
    out = np.zeros((h, w) + frame.shape[2:], dtype=frame.dtype)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, fw), min(y + h, fh)
    if x1 > x0 and y1 > y0:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = frame[y0:y1, x0:x1]
    return out
