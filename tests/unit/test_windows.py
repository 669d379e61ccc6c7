"""Windows over sequences, lazy window index, and stitching without boundary artefacts."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mouse_pipeline.errors import ConfigError
from mouse_pipeline.sequences.windows import (
    Stitcher,
    WindowIndex,
    boundary_jump_summary,
    default_stride,
    gather_windows,
    inference_stride,
    window_starts,
)


def stitch(window_probs, starts, n_frames, weights="hann"):
    """All windows of a video through one Stitcher."""
    stitcher = Stitcher(n_frames, weights)
    stitcher.add(window_probs, starts)
    return stitcher.result()


def jump_ratio(probs, length, stride):
    """The boundary jump ratio of one video (windows every ``stride`` frames)."""
    return boundary_jump_summary([(probs, length, stride)])["ratio"]


def test_window_starts_examples():
    assert window_starts(10, 4, 4).tolist() == [0, 4, 8]
    assert window_starts(8, 4, 4).tolist() == [0, 4]
    assert window_starts(3, 4, 2).tolist() == [0]
    assert window_starts(0, 4, 2).tolist() == []
    assert window_starts(20, 8, default_stride(8)).tolist() == [0, 2, 4, 6, 8, 10, 12]
    assert default_stride(3) == 1 and inference_stride(64, None) == 16 and inference_stride(64, 5) == 5


@given(n=st.integers(1, 400), length=st.integers(1, 64), data=st.data())
def test_window_starts_cover_every_frame(n, length, data):
    stride = data.draw(st.integers(1, length))
    starts = window_starts(n, length, stride)
    covered = np.zeros(n, dtype=bool)
    for s in starts:
        covered[s : s + length] = True
    assert covered.all()
    assert starts[-1] < n and (len(starts) == 1 or starts[-2] + length < n)


@pytest.mark.parametrize(("length", "stride"), [(0, 1), (4, 0), (4, 5)])
def test_window_args_checked(length, stride):
    with pytest.raises(ConfigError, match="stride"):
        window_starts(10, length, stride)


def test_gather_windows_values_and_padding():
    x = np.arange(11 * 2, dtype=np.float64).reshape(11, 2)
    y = np.zeros((11, 1), dtype=np.int8)
    y[3] = 1
    y[4] = -1
    xw, yw = gather_windows(x, [0, 3, 6, 9], 4, labels=y)
    assert xw.shape == (4, 4, 2) and yw.shape == (4, 4, 1)
    assert xw.dtype == np.float32 and yw.dtype == np.float32
    np.testing.assert_array_equal(xw[1], x[3:7])
    np.testing.assert_array_equal(xw[3, :2], x[9:11])
    assert (xw[3, 2:] == 0).all()  # the one padding policy: zero features ...
    assert yw[1, :, 0].tolist() == [1, -1, 0, 0]
    assert yw[3, :, 0].tolist() == [0, 0, -1, -1]  # ... and -1 targets past the end
    # a slice of the video beginning at frame `offset` gives the same windows
    part, _ = gather_windows(x[6:], [6, 9], 4, offset=6)
    np.testing.assert_array_equal(part, xw[2:])


def test_gather_windows_reads_only_the_frames_asked_for():
    class Source:  # a frame source that records what is read, like a cache file
        shape = (40, 3)

        def __init__(self):
            self.reads = []

        def __getitem__(self, key):
            self.reads.append((key.start, key.stop))
            return np.ones((len(range(40)[key]), 3), np.float32)

    src = Source()
    xb, _ = gather_windows(src, [8, 36], 8)
    assert src.reads == [(8, 16), (36, 44)]
    assert xb[1, :4].sum() == 12 and xb[1, 4:].sum() == 0


def test_window_index_gathers_windows_of_several_videos():
    rng = np.random.default_rng(0)
    xs = {"a": rng.normal(size=(23, 3)), "b": rng.normal(size=(9, 3))}
    ys = {v: rng.integers(-1, 2, size=(len(x), 2)).astype(np.int8) for v, x in xs.items()}
    index = WindowIndex({v: len(x) for v, x in xs.items()}, length=8, stride=4)
    assert len(index) == 5 + 2  # a: 0 4 8 12 16; b: 0 4
    assert index[0] == ("a", 0) and index[4] == ("a", 16) and index[6] == ("b", 4)
    order = np.array([6, 4, 0])
    xb, yb = index.gather(xs, ys, order)
    xa, ya = gather_windows(xs["a"], window_starts(23, 8, 4), 8, labels=ys["a"])
    xb_b, yb_b = gather_windows(xs["b"], window_starts(9, 8, 4), 8, labels=ys["b"])
    np.testing.assert_array_equal(xb, np.stack([xb_b[1], xa[4], xa[0]]))
    np.testing.assert_array_equal(yb, np.stack([yb_b[1], ya[4], ya[0]]))
    assert yb[0, 5:].tolist() == [[-1, -1]] * 3  # b's frames 4..8: 5 real, 3 padded
    positional = WindowIndex([23, 9], length=8, stride=4)
    assert positional[5] == (1, 0)
    assert list(positional) == [(0, 0), (0, 4), (0, 8), (0, 12), (0, 16), (1, 0), (1, 4)]


def test_stitcher_in_batches_equals_one_call():
    rng = np.random.default_rng(3)
    starts = window_starts(70, 16, 4)
    probs = rng.random((len(starts), 16, 2))
    whole = stitch(probs, starts, 70)
    parts = Stitcher(70)
    for a in range(0, len(starts), 5):
        parts.add(probs[a:a + 5], starts[a:a + 5])
    np.testing.assert_array_equal(parts.result(), whole)
    # against an independent weighted mean
    w = np.sin(np.pi * (np.arange(16) + 0.5) / 16) ** 2 + 1e-3
    num, den = np.zeros((70, 2)), np.zeros(70)
    for s, p in zip(starts, probs, strict=True):
        k = min(16, 70 - s)
        num[s:s + k] += w[:k, None] * p[:k]
        den[s:s + k] += w[:k]
    np.testing.assert_allclose(whole, num / den[:, None], rtol=1e-6)


def test_stitch_recovers_consistent_predictions():
    rng = np.random.default_rng(1)
    truth = rng.random((50, 2))
    starts = window_starts(50, 12, default_stride(12))
    padded = np.concatenate([truth, np.full((12, 2), 9.0)])  # padding values are dropped
    windows = np.stack([padded[s : s + 12] for s in starts])
    for weights in ("hann", "uniform"):
        np.testing.assert_allclose(stitch(windows, starts, 50, weights), truth, atol=1e-6)


def test_stitch_weights_window_centres():
    starts = np.array([0, 2])
    probs = np.zeros((2, 4, 1))
    probs[1] = 1.0
    out = stitch(probs, starts, 6)[:, 0]
    # frame 2 is the edge of window 1 (small weight) and the centre of window 0
    assert out[2] < 0.2 and out[3] > 0.8 and out[0] == 0 and out[5] == 1


def test_stitch_rejects_uncovered_frames():
    with pytest.raises(ValueError, match="uncovered"):
        stitch(np.zeros((1, 4, 1)), np.array([0]), 6)


def test_boundary_jump_ratio_hand_computed():
    p = np.array([0.0, 0.1, 0.2, 0.8, 0.9, 1.0])
    # window starts 0 and 3, length 3: boundary step t=2 (t+1=3); others 0.1 each
    assert jump_ratio(p, 3, 3) == pytest.approx(0.6 / 0.1)
    assert np.isnan(jump_ratio(np.zeros(6), 3, 3))


def test_stitching_removes_window_boundary_jumps():
    """Per-window offsets: naive concatenation jumps at boundaries, stitching does not."""
    n, length = 1200, 100
    signal = 0.5 + 0.3 * np.sin(2 * np.pi * np.arange(n + length) / 250)
    rng = np.random.default_rng(0)

    def model(starts):  # a model whose output depends on where its window starts
        offsets = rng.uniform(-0.15, 0.15, size=len(starts))
        return np.stack([signal[s : s + length] + o for s, o in zip(starts, offsets, strict=True)])[
            ..., None
        ]

    naive_starts = window_starts(n, length, length)
    naive = stitch(model(naive_starts), naive_starts, n, "uniform")
    assert jump_ratio(naive, length, length) > 5

    starts = window_starts(n, length, default_stride(length))  # stride = length // 4
    assert starts[1] == length // 4
    stitched = stitch(model(starts), starts, n)
    assert jump_ratio(stitched, length, default_stride(length)) < 1.5


def test_boundary_jump_summary_pools_videos():
    a = np.array([0.0, 0.1, 0.2, 0.8, 0.9, 1.0])  # edge step 0.6, four others of 0.1
    b = np.array([0.5, 0.5, 0.5, 0.7, 0.7, 0.7])  # edge step 0.2, four others of 0.0
    pooled = boundary_jump_summary([(a, 3, 3), (b, 3, 3)])  # starts 0 and 3
    # pooled means: edges (0.6 + 0.2) / 2, elsewhere 0.4 / 8, not the mean of per-video ratios
    assert pooled["ratio"] == pytest.approx(0.4 / 0.05)
    assert np.isfinite(pooled["chance_low"]) and pooled["chance_low"] <= pooled["chance_high"]
    assert np.isnan(boundary_jump_summary([(a, 1, 1)])["chance_low"])  # stride 1: no room


def test_boundary_jump_chance_range_separates_edge_effects_from_noise():
    """Random behaviour changes: predictions without an edge effect give a ratio near 1,
    like the moved edges do; a model that shifts each window's output sits far above."""
    rng = np.random.default_rng(1)
    n, length, stride = 1000, 64, 16
    videos, edgy = [], []
    for _ in range(10):
        changes = np.sort(rng.choice(n, 12, replace=False))
        truth = (np.searchsorted(changes, np.arange(n)) % 2).astype(float)
        smooth = np.convolve(truth, np.ones(5) / 5, mode="same")
        starts = window_starts(n, length, stride)
        videos.append((smooth, length, stride))
        offsets = rng.uniform(-0.2, 0.2, len(starts))
        windows = np.stack([np.pad(smooth, (0, length))[s:s + length] + o for s, o in zip(starts, offsets, strict=True)])
        edgy.append((stitch(windows[..., None], starts, n, "uniform")[:, 0], length, stride))
    clean = boundary_jump_summary(videos)
    # one draw among the moved-edge ones: near that spread, not necessarily inside it
    assert 0.5 < clean["chance_low"] <= clean["chance_high"] < 1.5 and 0.5 < clean["ratio"] < 1.5
    bad = boundary_jump_summary(edgy)
    assert bad["ratio"] > 2 * bad["chance_high"]


def test_boundary_jump_summary_takes_each_videos_own_window_grid():
    # folds of one run may have chosen different window lengths in a search
    p = np.random.default_rng(2).random(40)
    mixed = boundary_jump_summary([(p, 8, 4), (p[:30], 6, 2)])
    assert np.isfinite(mixed["ratio"]) and np.isfinite(mixed["chance_low"])  # moved by 1 only
    assert mixed["chance_low"] == mixed["chance_high"]
