"""Fixed-length windows over per-video sequences, and stitching them back together.

Sequence models see windows of ``length`` frames cut from a video every ``stride``
frames. :func:`window_starts` lists the starts so that every frame is covered; the last
window may run past the end of the video, and its missing frames are padded: features
repeat the last frame (``pad='edge'``) or are zero, and labels are ``-1`` so a masked loss
ignores them.

At inference windows overlap (stride ``length // 4`` by default, see
:func:`predict_windows_plan`) and :func:`stitch` averages the per-window predictions of
each frame with a taper weight that is near zero at a window's edges, where a model has
the least context. A frame's prediction then no longer depends on where a window
happened to start; :func:`boundary_jump_ratio` measures how much it still does.

Pure numpy: this module imports no TensorFlow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

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


def predict_windows_plan(n_frames: int, length: int, stride: int | None = None) -> np.ndarray:
    """Window starts for inference: overlapping windows, ``stride = length // 4`` by default."""
    return window_starts(n_frames, length, stride or max(length // 4, 1))


def _pad(a: np.ndarray, n: int, value: float | None) -> np.ndarray:
    """``a`` as float32 with ``n`` rows, extra rows ``value`` (``None``: repeat the last)."""
    out = np.empty((n, *a.shape[1:]), dtype=np.float32)
    out[: len(a)] = a
    if n > len(a):
        out[len(a) :] = a[-1] if value is None else value
    return out


def make_windows(
    x: np.ndarray, y: np.ndarray | None, length: int, stride: int, pad: str = "edge"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut one video's features (and labels) into windows.

    Parameters
    ----------
    x
        Features, shape ``(T, D)``.
    y
        Labels, shape ``(T, K)``, ``int8`` with ``-1`` for unlabelled frames; or ``None``.
    length, stride
        Window length and stride in frames.
    pad
        ``'edge'`` repeats the last frame's features in padded frames, ``'zero'`` uses 0.

    Returns
    -------
    xw : numpy.ndarray
        ``(N, length, D)`` float32, a read-only strided view over one padded copy of ``x``
        (overlapping windows share memory; copy it before writing).
    yw : numpy.ndarray or None
        ``(N, length, K)`` float32 read-only view; padded frames are ``-1``.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"Expected features of shape (T, D), but got {x.shape}")
    if y is not None and (np.ndim(y) != 2 or len(y) != len(x)):
        raise ValueError(f"Expected labels of shape ({len(x)}, K), but got {np.shape(y)}")
    if pad not in ("edge", "zero"):
        raise ValueError(f"pad must be 'edge' or 'zero', got {pad!r}")
    starts = window_starts(len(x), length, stride)
    n_total = int(starts[-1]) + length if len(starts) else 0

    def view(a: np.ndarray) -> np.ndarray:
        s0, s1 = a.strides
        shape = (len(starts), length, a.shape[1])
        return as_strided(a, shape=shape, strides=(stride * s0, s0, s1), writeable=False)

    xw = view(_pad(x, n_total, None if pad == "edge" else 0.0))
    yw = None if y is None else view(_pad(np.asarray(y), n_total, -1.0))
    return xw, yw


class WindowIndex:
    """Lazy list of ``(video, start)`` windows over many videos.

    A data loader draws indices (shuffled or not) and calls :meth:`gather` to slice just
    those windows from per-video arrays (numpy arrays or h5py datasets), so the windows
    of a large dataset are never all in memory.

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
        """Stack windows ``indices`` into a batch.

        Returns
        -------
        xb : numpy.ndarray
            ``(B, length, D)`` float32; padded frames repeat the video's last frame.
        yb : numpy.ndarray or None
            ``(B, length, K)`` float32 with ``-1`` in padded frames.
        """
        indices = np.asarray(indices, dtype=np.int64)
        first = x_by_video[self.videos[0]] if len(self.videos) else None
        dim = first.shape[1] if first is not None else 0
        xb = np.empty((len(indices), self.length, dim), dtype=np.float32)
        yb = None
        for b, i in enumerate(indices):
            video, start = self[int(i)]
            end = min(start + self.length, self.n_frames[video])
            xb[b] = _pad(np.asarray(x_by_video[video][start:end]), self.length, None)
            if y_by_video is not None:
                y = np.asarray(y_by_video[video][start:end])
                if yb is None:
                    yb = np.empty((len(indices), self.length, y.shape[1]), dtype=np.float32)
                yb[b] = _pad(y, self.length, -1.0)
        return xb, yb


def _weights(length: int, kind: str) -> np.ndarray:
    if kind == "uniform":
        return np.ones(length)
    if kind == "hann":
        return np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 2 + TAPER_FLOOR
    raise ValueError(f"weights must be 'hann' or 'uniform', got {kind!r}")


def stitch(
    window_probs: np.ndarray, starts: np.ndarray, n_frames: int, weights: str = "hann"
) -> np.ndarray:
    """Combine overlapping window predictions into per-frame probabilities.

    Parameters
    ----------
    window_probs
        ``(N, length, K)`` predictions, one window per start.
    starts
        ``(N,)`` window starts; together the windows must cover frames ``0..n_frames-1``.
    n_frames
        Frames in the video; window frames past it (padding) are dropped.
    weights
        ``'hann'`` (default): weight ``sin^2(pi (j + 0.5) / length) + TAPER_FLOOR`` for
        position ``j`` in a window, so a window fades in and out and its edges, where the
        model has least context, count little. ``'uniform'``: plain mean.

    Returns
    -------
    numpy.ndarray
        ``(n_frames, K)`` float32, the weighted mean of every window covering each frame.
    """
    window_probs = np.asarray(window_probs, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    if window_probs.ndim != 3 or len(window_probs) != len(starts):
        raise ValueError(
            f"Expected window_probs of shape ({len(starts)}, length, K), "
            f"but got {window_probs.shape}"
        )
    length = window_probs.shape[1]
    w = _weights(length, weights)
    total = np.zeros((n_frames, window_probs.shape[2]))
    weight = np.zeros(n_frames)
    for probs, start in zip(window_probs, starts, strict=True):
        stop = min(start + length, n_frames)
        if stop <= start:
            continue
        total[start:stop] += w[: stop - start, None] * probs[: stop - start]
        weight[start:stop] += w[: stop - start]
    if n_frames and weight.min() == 0:
        raise ValueError(f"windows leave frame {int(np.argmin(weight))} uncovered")
    return (total / weight[:, None]).astype(np.float32)


def boundary_jump_ratio(probs: np.ndarray, starts: np.ndarray, length: int) -> float:
    """How much predictions jump at window edges compared with elsewhere.

    With ``d[t] = |p[t+1] - p[t]|`` (averaged over behaviours), the ratio is the mean of
    ``d[t]`` over boundary steps, those where ``t+1`` is a window start or the first frame
    after a window (``start + length``), divided by the mean over all other steps. About 1
    means predictions ignore where windows start; the thesis fork's predictions give ~19.

    Parameters
    ----------
    probs
        ``(T,)`` or ``(T, K)`` per-frame probabilities.
    starts
        Starts of the windows that produced them.
    length
        Window length.

    Returns
    -------
    float
        The ratio; ``nan`` when there are no boundary steps or no other steps, or both
        means are 0, and ``inf`` when only the other mean is 0.
    """
    return _jump_ratio([_jump_sums(probs, starts, length)])


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
    """:func:`boundary_jump_ratio` pooled over videos, with the range chance gives.

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
