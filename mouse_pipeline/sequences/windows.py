"""Fixed-length windows over per-video sequences: the one windowing of stage 2.

Sequence models see windows of ``length`` frames cut from a video every ``stride``
frames. :func:`window_starts` lists the starts so that every frame is covered; the last
window may run past the end of the video. One padding policy holds everywhere (training,
validation, inference, bench): frames past the end are zero in the features and ``-1``
in the labels, so the masked loss ignores them (:func:`gather_windows`).

Windows are cut from any per-video frame source that slices like an array: a numpy
array, or a cache file read as needed (:class:`mouse_pipeline.dataset.CachedFeatures`),
so a video's embeddings need not be in memory.

At inference windows overlap (stride :func:`default_stride`, ``length // 4``, unless
``train.window.inference_stride`` says otherwise) and a :class:`Stitcher` averages the
per-window predictions of each frame with a taper weight that is near zero at a
window's edges, where a model has the least context. A frame's prediction then no longer
depends on where a window happened to start; :func:`boundary_jump_summary` measures how
much it still does.

Pure numpy: this module imports no TensorFlow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mouse_pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

#: Weight every frame keeps in a tapered window, so that the first and last frame of a
#: video (covered only by a window's edge) still get a prediction.
TAPER_FLOOR = 1e-3


def _check(length: int, stride: int) -> None:
    if length < 1 or not 1 <= stride <= length:
        raise ConfigError(
            f"window length {length} and stride {stride}: need length >= 1 and "
            "1 <= stride <= length (else frames are skipped)"
        )


def default_stride(length: int) -> int:
    """The inference stride when none is configured: ``length // 4`` (at least 1)."""
    return max(1, int(length) // 4)


def inference_stride(length: int, configured: int | None) -> int:
    """The configured inference stride, or :func:`default_stride`."""
    return int(configured) if configured else default_stride(length)


def window_starts(n_frames: int, length: int, stride: int) -> np.ndarray:
    """Start indices of windows covering every frame.

    Parameters
    ----------
    n_frames
        Frames in the video.
    length
        Window length in frames.
    stride
        Frames between consecutive starts (``1 <= stride <= length``).

    Returns
    -------
    numpy.ndarray
        ``int64`` starts ``0, stride, 2*stride, ...``; the last window reaches or passes
        the final frame. Empty for an empty video.
    """
    _check(length, stride)
    if n_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    n_windows = 1 + -(-max(n_frames - length, 0) // stride)
    return np.arange(n_windows, dtype=np.int64) * stride


def gather_windows(frames: Any, starts: Sequence[int] | np.ndarray, length: int,
                   labels: Any = None, offset: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Stack the windows starting at ``starts`` of one video into a batch.

    Parameters
    ----------
    frames
        The video's features, ``(T, D)``, anything that slices like an array (a numpy
        array, an h5py dataset, :class:`~mouse_pipeline.dataset.CachedFeatures`); or a
        slice of them beginning at frame ``offset``.
    starts
        Window starts in video frames.
    length
        Window length.
    labels
        ``(T, K)`` labels sliced like ``frames``, or None.
    offset
        The video frame that ``frames[0]`` is.

    Returns
    -------
    xb : numpy.ndarray
        ``(B, length, D)`` float32; frames past the end of ``frames`` are 0.
    yb : numpy.ndarray or None
        ``(B, length, K)`` float32, ``-1`` past the end.
    """
    xb = np.zeros((len(starts), length, frames.shape[1]), np.float32)
    yb = None if labels is None else np.full((len(starts), length, labels.shape[1]), -1.0, np.float32)
    for j, s in enumerate(starts):
        a = int(s) - offset
        chunk = frames[a:a + length]
        xb[j, :len(chunk)] = chunk
        if yb is not None:
            yb[j, :len(chunk)] = labels[a:a + length]
    return xb, yb


class WindowIndex:
    """Lazy list of ``(video, start)`` windows over many videos.

    A data loader draws indices (shuffled or not) and calls :meth:`gather` to slice just
    those windows from per-video frame sources, so the windows of a large dataset are
    never all in memory.

    Parameters
    ----------
    lengths_per_video
        Frames per video: a mapping ``video_id -> n_frames`` (keys are the video
        handles) or a sequence (positions are the handles).
    length, stride
        Window length and stride in frames.
    """

    def __init__(
        self, lengths_per_video: Mapping[str, int] | Sequence[int], length: int, stride: int
    ) -> None:
        if isinstance(lengths_per_video, Mapping):
            self.videos: tuple = tuple(lengths_per_video)
            lengths = [int(lengths_per_video[v]) for v in self.videos]
        else:
            lengths = [int(n) for n in lengths_per_video]
            self.videos = tuple(range(len(lengths)))
        self.length = length
        self.stride = stride
        self.n_frames = dict(zip(self.videos, lengths, strict=True))
        per_video = [window_starts(n, length, stride) for n in lengths]
        self.video_index = np.repeat(np.arange(len(lengths)), [len(s) for s in per_video])
        self.starts = np.concatenate(per_video) if per_video else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def __iter__(self) -> Iterator[tuple]:
        """All ``(video, start)`` pairs, video by video."""
        return (self[i] for i in range(len(self)))

    def __getitem__(self, i: int) -> tuple:
        """The ``(video, start)`` pair of window ``i``."""
        return self.videos[self.video_index[i]], int(self.starts[i])

    def gather(
        self,
        x_by_video: Mapping | Sequence,
        y_by_video: Mapping | Sequence | None,
        indices: Sequence[int] | np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Stack windows ``indices`` (of any videos) into a batch, padded as
        :func:`gather_windows` pads.

        Returns
        -------
        xb : numpy.ndarray
            ``(B, length, D)`` float32, 0 past the end of a video.
        yb : numpy.ndarray or None
            ``(B, length, K)`` float32 with ``-1`` past the end.
        """
        indices = np.asarray(indices, dtype=np.int64)
        dim = x_by_video[self.videos[0]].shape[1] if len(self.videos) else 0
        xb = np.zeros((len(indices), self.length, dim), dtype=np.float32)
        yb = None
        if y_by_video is not None and len(self.videos):
            k = y_by_video[self.videos[0]].shape[1]
            yb = np.full((len(indices), self.length, k), -1.0, dtype=np.float32)
        for b, i in enumerate(indices):
            video, start = self[int(i)]
            chunk = x_by_video[video][start:start + self.length]
            xb[b, :len(chunk)] = chunk
            if yb is not None:
                yb[b, :len(chunk)] = y_by_video[video][start:start + self.length]
        return xb, yb


def _weights(length: int, kind: str) -> np.ndarray:
    if kind == "uniform":
        return np.ones(length)
    return np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 2 + TAPER_FLOOR


class Stitcher:
    """Overlapping window predictions of one video, blended into per-frame probabilities.

    Windows are added in any number of batches (:meth:`add`), so a long video's windows
    need never be in memory together; :meth:`result` gives the weighted mean of every
    window covering each frame.

    Parameters
    ----------
    n_frames
        Frames in the video; window frames past it (padding) are dropped.
    weights
        ``'hann'`` (default): weight ``sin^2(pi (j + 0.5) / length) + TAPER_FLOOR`` for
        position ``j`` in a window, so a window fades in and out and its edges, where the
        model has least context, count little. ``'uniform'``: plain mean.
    """

    def __init__(self, n_frames: int, weights: str = "hann") -> None:
        if weights not in ("hann", "uniform"):
            raise ValueError(f"weights must be 'hann' or 'uniform', got {weights!r}")
        self.n_frames, self.kind = int(n_frames), weights
        self.total: np.ndarray | None = None
        self.weight = np.zeros(self.n_frames)

    def add(self, window_probs: np.ndarray, starts: np.ndarray) -> None:
        """Add ``(N, length, K)`` predictions of the windows starting at ``starts``."""
        window_probs = np.asarray(window_probs, dtype=np.float64)
        starts = np.asarray(starts, dtype=np.int64)
        if window_probs.ndim != 3 or len(window_probs) != len(starts):
            raise ValueError(
                f"Expected window_probs of shape ({len(starts)}, length, K), "
                f"but got {window_probs.shape}"
            )
        if self.total is None:
            self.total = np.zeros((self.n_frames, window_probs.shape[2]))
        length = window_probs.shape[1]
        w = _weights(length, self.kind)
        for probs, start in zip(window_probs, starts, strict=True):
            stop = min(start + length, self.n_frames)
            if stop <= start:
                continue
            self.total[start:stop] += w[: stop - start, None] * probs[: stop - start]
            self.weight[start:stop] += w[: stop - start]

    def result(self) -> np.ndarray:
        """``(n_frames, K)`` float32 probabilities; ValueError when a frame is uncovered."""
        if self.total is None:
            if self.n_frames:
                raise ValueError("windows leave frame 0 uncovered")
            return np.zeros((0, 0), np.float32)
        if self.n_frames and self.weight.min() == 0:
            raise ValueError(f"windows leave frame {int(np.argmin(self.weight))} uncovered")
        return (self.total / self.weight[:, None]).astype(np.float32)


def _jump_sums(probs: np.ndarray, starts: np.ndarray, length: int) -> tuple[float, int, float, int]:
    """Sum and count of the frame-to-frame changes at window edges, and elsewhere."""
    p = np.asarray(probs, dtype=np.float64)
    p = p[:, None] if p.ndim == 1 else p
    d = np.abs(np.diff(p, axis=0)).mean(axis=1) if len(p) > 1 else np.zeros(0)
    starts = np.asarray(starts, dtype=np.int64)
    edges = np.concatenate([starts, starts + length]) - 1  # steps t with t+1 at an edge
    edges = edges[(edges >= 0) & (edges < len(d))]
    boundary = np.zeros(len(d), dtype=bool)
    boundary[edges] = True
    return float(d[boundary].sum()), int(boundary.sum()), float(d[~boundary].sum()), int((~boundary).sum())


def _jump_ratio(sums: Sequence[tuple[float, int, float, int]]) -> float:
    at, n_at, other, n_other = (sum(col) for col in zip(*sums, strict=True)) if sums else (0, 0, 0, 0)
    if n_at == 0 or n_other == 0:
        return float("nan")
    at, other = at / n_at, other / n_other
    if other == 0:
        return float("nan") if at == 0 else float("inf")
    return float(at / other)


def boundary_jump_summary(videos: Sequence[tuple[np.ndarray, int, int]]) -> dict[str, float]:
    """How much predictions jump at window edges compared with elsewhere, pooled over videos,
    with the range chance gives.

    With ``d[t] = |p[t+1] - p[t]|`` (averaged over behaviours), the ratio is the mean of
    ``d[t]`` over boundary steps, those where ``t+1`` is a window start or the first frame
    after a window (``start + length``), divided by the mean over all other steps. About 1
    means predictions ignore where windows start; the thesis fork's predictions give ~19.
    It is ``nan`` when there are no boundary steps or no other steps, or both means are 0,
    and ``inf`` when only the other mean is 0.

    One video's ratio is noisy: a few real behaviour changes that happen to fall on window
    edges move it a lot (0.5-2 is common for predictions with no edge effect at all). So
    the changes of all videos are pooled, and the same pooled ratio is computed with every
    edge moved 1 to ``stride - 1`` frames (the smallest stride of the videos), onto steps
    where no window starts or ends for a regular grid: the spread of those ratios is what
    chance alone gives (the true ratio is one more draw, so it may fall just outside it;
    an edge effect puts it far above).

    Parameters
    ----------
    videos
        ``(probs, length, stride)`` per video: its probabilities, and the window length
        and stride that produced them (:func:`window_starts`); folds may differ in both.

    Returns
    -------
    dict
        ``ratio`` (pooled), ``chance_low`` and ``chance_high`` (min and max over the moved
        edges; NaN when a stride is 1).
    """
    grids = [(p, window_starts(len(p), int(length), int(stride)), int(length)) for p, length, stride in videos]
    ratio = _jump_ratio([_jump_sums(p, s, length) for p, s, length in grids])
    room = min((int(stride) for _, _, stride in videos), default=1)
    moved = [_jump_ratio([_jump_sums(p, s + k, length) for p, s, length in grids]) for k in range(1, room)]
    moved = [r for r in moved if np.isfinite(r)]
    return {"ratio": ratio, "chance_low": float(min(moved)) if moved else float("nan"),
            "chance_high": float(max(moved)) if moved else float("nan")}
