"""Per-frame probabilities of a whole video from a sequence model, window by window.

Used alike by validation during training, the test videos of each fold, ``predict`` and
the bench. Windows of ``length`` frames every ``stride`` frames are read from the
video's frame source (an array or a cache file read as needed) a batch at a time,
predicted, and blended by a :class:`~.windows.Stitcher`: memory is bounded by one batch
of windows plus the per-frame result, however long the video.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .windows import Stitcher, gather_windows, window_starts

#: Windows predicted in one call of the model.
BATCH_WINDOWS = 64


def predict_video(model: Any, frames: Any, length: int, stride: int,
                  batch_windows: int = BATCH_WINDOWS) -> np.ndarray:
    """Per-frame probabilities ``(n_frames, n_outputs)`` float32 of one video.

    Parameters
    ----------
    model
        A Keras model mapping ``(B, length, D)`` to ``(B, length, K)``.
    frames
        The video's features ``(n_frames, D)``: an array or anything that slices like one.
    length, stride
        Window length and inference stride.
    batch_windows
        Windows per model call (memory bound).
    """
    n = int(frames.shape[0])
    starts = window_starts(n, length, stride)
    stitcher = Stitcher(n)
    for c in range(0, len(starts), batch_windows):
        chunk = starts[c:c + batch_windows]
        lo, hi = int(chunk[0]), min(int(chunk[-1]) + length, n)
        xb, _ = gather_windows(frames[lo:hi], chunk, length, offset=lo)
        stitcher.add(np.asarray(model(xb, training=False)), chunk)
    return stitcher.result()


def predict_heads(heads: Sequence[tuple[Sequence[int], Any]], frames: Any, length: int, stride: int,
                  n_outputs: int) -> np.ndarray:
    """Probabilities ``(n_frames, n_outputs)`` from heads ``(outputs, model)`` together."""
    out = np.zeros((int(frames.shape[0]), n_outputs), np.float32)
    for outputs, model in heads:
        out[:, list(outputs)] = predict_video(model, frames, length, stride)
    return out
