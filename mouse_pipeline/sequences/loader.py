"""Stage 2's data loader: training batches and standardisation statistics, streamed.

Frames are read from each video's frame source (an array, or a cache file read as
needed, :class:`~mouse_pipeline.dataset.CachedFeatures`) only for the windows of the
batch at hand, so training memory does not grow with the labelled set; whether the
embeddings are first read into memory is :func:`~mouse_pipeline.dataset.load_into_memory`'s
choice under ``train.memory_gb``. Both give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from .windows import WindowIndex

#: Frames read at a time by the statistics pass.
STATS_CHUNK = 4096


def _running_sum(total: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    # np.add.reduce over axis 0 adds row after row; continuing from the running total
    # gives the very sum a reduction over all videos stacked at once would.
    return np.add.reduce(rows if total is None else np.concatenate([total[None], rows]), axis=0)


def feature_statistics(sources: Sequence[Any], chunk: int = STATS_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per feature over every frame of ``sources``.

    Two streaming passes (mean, then squared deviations) over ``chunk`` frames at a time;
    the result equals ``np.mean``/``np.std`` of all frames stacked, bit for bit, without
    ever stacking them.
    """
    total, n = None, 0
    for x in sources:
        for a in range(0, x.shape[0], chunk):
            rows = np.asarray(x[a:a + chunk], dtype=np.float32)
            total, n = _running_sum(total, rows), n + len(rows)
    if total is None or n == 0:
        raise ValueError("no frames to compute statistics on")
    mean = np.true_divide(total, n)
    total = None
    for x in sources:
        for a in range(0, x.shape[0], chunk):
            d = np.asarray(x[a:a + chunk], dtype=np.float32) - mean
            total = _running_sum(total, d * d)
    return mean, np.sqrt(np.true_divide(total, n))


class WindowSequence(keras.utils.PyDataset):
    """Batches of training windows sliced from per-video frame sources on demand.

    Padding past the end of a video is zero in x and -1 in y, so the masked loss
    ignores it, as it ignores frames labelled -1 (:func:`~.windows.gather_windows`).

    Parameters
    ----------
    xs, ys
        Per video: features ``(T, D)`` (array-like) and float32 targets ``(T, K)``.
    length, stride
        Window length and training stride.
    batch_size, seed
        Windows per batch; the shuffle's seed (reshuffled every epoch).
    """

    def __init__(self, xs: Sequence[Any], ys: Sequence[np.ndarray], length: int, stride: int,
                 batch_size: int, seed: int, shuffle: bool = True):
        super().__init__(workers=1, use_multiprocessing=False)
        self.xs, self.ys = list(xs), list(ys)
        self.batch_size = batch_size
        self.index = WindowIndex([x.shape[0] for x in self.xs], length, stride)
        self.rng = np.random.default_rng(seed)
        self.shuffle = shuffle
        self.order = np.arange(len(self.index))
        if shuffle:
            self.rng.shuffle(self.order)

    @property
    def n_windows(self) -> int:
        return len(self.index)

    def __len__(self) -> int:
        return math.ceil(len(self.index) / self.batch_size)

    def __getitem__(self, i: int):
        sel = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.index.gather(self.xs, self.ys, sel)

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.rng.shuffle(self.order)
