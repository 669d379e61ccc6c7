"""Sequence models and the training loop on embeddings with planted structure (no video)."""

from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mouse_pipeline.annotations import Labels
from mouse_pipeline.config import MODEL_KINDS as CONFIG_MODEL_KINDS
from mouse_pipeline.config import load_config
from mouse_pipeline.dataset import VideoData
from mouse_pipeline.errors import ConfigError
from mouse_pipeline.sequences.fit import fit_head
from mouse_pipeline.sequences.heads import FrameDelta
from mouse_pipeline.sequences.inference import predict_video
from mouse_pipeline.sequences.loader import WindowSequence, feature_statistics
from mouse_pipeline.sequences.models import (
    MODEL_KINDS,
    MaskedWeightedBCE,
    build_model,
    check_window,
    load_model,
    positive_weights,
    save_model,
    tcn_receptive_field,
)
from mouse_pipeline.sequences.search import search_trials
from mouse_pipeline.sequences.windows import boundary_jump_summary

DIM = 16

#: Each head with its settings under test (the transformer once with each position scheme).
KINDS = [("lstm", ()), ("tcn", ()), ("linear", ()), ("linear", ("train.linear.delta=true",)),
         ("mlp", ()), ("transformer", ()), ("transformer", ("train.transformer.positions=sinusoidal",))]
KIND_IDS = ["lstm", "tcn", "linear", "linear-delta", "mlp", "transformer-relative",
            "transformer-sinusoidal"]


def planted_video(rng, n=400, vid="v"):
    """Two behaviours: one visible in single frames, one only as a temporal oscillation."""
    y = np.zeros((n, 2), np.int8)
    for k, (bout, gap) in enumerate(((25, 60), (40, 90))):
        t = int(rng.integers(5, 40))
        while t < n:
            y[t:t + bout, k] = 1
            t += bout + gap + int(rng.integers(0, 30))
    x = rng.normal(0, 1, (n, DIM)).astype(np.float32)
    x[:, 0] += 2.5 * y[:, 0]                                   # per-frame cue
    phase = np.where(np.arange(n) % 4 < 2, 1.0, -1.0)
    x[:, 1] += 2.0 * phase * y[:, 1]                           # alternating sign: temporal cue
    y[:3] = -1                                                 # a few unlabelled frames
    return VideoData(vid, x, Labels(("a", "b"), y), 10.0, Path(f"{vid}.h5"))


SMALL = ["train.window.length=32", "train.window.stride=8", "train.epochs=12", "train.patience=4",
         "train.batch_size=16", "train.learning_rate=0.005", "train.lstm.units=16",
         "train.tcn.filters=16", "train.tcn.dilations=[1, 2, 4]", "train.mlp.units=16",
         "train.transformer.width=16", "train.transformer.heads=2", "train.transformer.ff=32",
         "train.transformer.layers=1"]


@pytest.fixture(scope="module")
def tcfg():
    return load_config(None, SMALL).train


def small(*sets):
    """The small training settings of these tests with ``sets`` (``KEY=VALUE``) on top."""
    return load_config(None, [*SMALL, *sets]).train


def test_model_kinds_agree_with_the_configs_tf_free_copy():
    assert MODEL_KINDS == CONFIG_MODEL_KINDS


def test_masked_loss_ignores_unlabelled_and_padding():
    loss = MaskedWeightedBCE(pos_weight=[1.0])
    y = np.array([[[1.0], [0.0], [-1.0]]], np.float32)
    p = np.array([[[0.8], [0.3], [0.999]]], np.float32)
    expected = -(np.log(0.8) + np.log(0.7)) / 2
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)
    weighted = MaskedWeightedBCE(pos_weight=[3.0])
    assert float(weighted(y, p)) == pytest.approx(-(3 * np.log(0.8) + np.log(0.7)) / 2, rel=1e-5)


def test_positive_weights_from_training_labels():
    y = np.array([[1, 0], [0, 0], [0, -1], [0, 1]], np.int8)
    assert positive_weights([y]).tolist() == [3.0, 2.0]


@pytest.mark.parametrize(("kind", "sets"), [*KINDS, ("transformer", ("train.transformer.layers=2",))],
                         ids=[*KIND_IDS, "transformer-2-layers"])
def test_save_reload_gives_identical_predictions(tmp_path, kind, sets):
    rng = np.random.default_rng(0)
    model = build_model(kind, small(*sets), DIM, 2, np.zeros(DIM), np.ones(DIM), np.array([2.0, 3.0]))
    x = rng.normal(size=(3, 32, DIM)).astype(np.float32)
    y = (rng.random((3, 32, 2)) > 0.8).astype(np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    save_model(model, tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(model(x)))
    # the time axis is open: a longer sequence runs too
    assert np.asarray(again(rng.normal(size=(1, 50, DIM)).astype(np.float32))).shape == (1, 50, 2)


def test_tcn_refuses_window_shorter_than_receptive_field(tcfg):
    cfg = load_config(None, ["train.window.length=16", "train.window.stride=8",
                              "train.tcn.dilations=[1, 2, 4, 8]"]).train
    assert tcn_receptive_field(cfg) == 61
    with pytest.raises(ConfigError, match=r"train\.window\.length \(16\) is shorter than the TCN's receptive field \(61 frames\)"):
        check_window("tcn", cfg)
    check_window("lstm", cfg)  # LSTMs have no receptive field to respect


def test_receptive_field_matches_keras_tcn(tcfg):
    model = build_model("tcn", tcfg, DIM, 2, np.zeros(DIM), np.ones(DIM), np.ones(2))
    assert model.get_layer("tcn").receptive_field == tcn_receptive_field(tcfg)


def test_window_sequence_pads_with_masked_targets():
    x = [np.arange(10, dtype=np.float32)[:, None]]
    y = [np.ones((10, 1), np.float32)]
    seq = WindowSequence(x, y, length=8, stride=4, batch_size=8, seed=0, shuffle=False)
    assert len(seq) == 1 and seq.n_windows == 2  # starts 0 and 4: frames 4..9 and 2 padded
    xb, yb = seq[0]
    assert xb.shape == (2, 8, 1) and yb.shape == (2, 8, 1)
    assert xb[:, 0, 0].tolist() == [0, 4]
    np.testing.assert_array_equal(xb[1, :6, 0], np.arange(4, 10))
    assert yb[1, :6, 0].tolist() == [1] * 6 and yb[1, 6:, 0].tolist() == [-1, -1]
    assert xb[1, 6:, 0].tolist() == [0, 0]
    assert (yb[0] == 1).all()


def test_window_sequence_shuffles_every_epoch_and_covers_every_window():
    x = [np.arange(40, dtype=np.float32)[:, None], 100 + np.arange(20, dtype=np.float32)[:, None]]
    y = [np.zeros((40, 1), np.float32), np.zeros((20, 1), np.float32)]
    seq = WindowSequence(x, y, length=8, stride=4, batch_size=3, seed=0)
    first = sorted(float(v) for i in range(len(seq)) for v in seq[i][0][:, 0, 0])
    order = seq.order.copy()
    seq.on_epoch_end()
    assert not np.array_equal(order, seq.order)
    again = sorted(float(v) for i in range(len(seq)) for v in seq[i][0][:, 0, 0])
    assert first == again == sorted([*range(0, 33, 4), *range(100, 113, 4)])


def test_feature_statistics_stream_equals_stacked_numpy_bit_for_bit():
    rng = np.random.default_rng(4)
    xs = [rng.normal(3, 2, size=(n, 24)).astype(np.float32) for n in (700, 333, 1000)]
    mean, std = feature_statistics(xs, chunk=128)
    stacked = np.concatenate(xs)
    np.testing.assert_array_equal(mean, stacked.mean(axis=0))
    np.testing.assert_array_equal(std, stacked.std(axis=0))


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "sets"), KINDS, ids=KIND_IDS)
def test_model_learns_planted_structure_far_above_prevalence(kind, sets):
    """Behaviour 0 shows in single frames: every head learns it. Behaviour 1 is an
    oscillation whose sign alternates every two frames: the temporal heads learn it, a
    logistic regression cannot, even with the difference to the previous frame (a check
    that it really sees no more), and the MLP learns it only in part (from the cue's
    magnitude)."""
    tcfg = small(*sets)
    rng = np.random.default_rng(1)
    train = [planted_video(rng, vid=f"t{i}") for i in range(4)]
    val = [planted_video(rng, vid="val")]
    test = planted_video(rng, vid="test")
    res = fit_head(kind, tcfg, train, val, [0, 1], seed=3, label=kind, progress=False)
    probs = predict_video(res.model, test.features, tcfg.window.length, 8)
    ap, prevalence = [], []
    for k in range(2):
        keep = test.labels.matrix[:, k] >= 0
        yk = test.labels.matrix[keep, k]
        ap.append(average_precision_score(yk, probs[keep, k]))
        prevalence.append(yk.mean())
    assert ap[0] > max(0.6, 2.5 * prevalence[0]), (kind, ap, prevalence)
    if kind == "linear":
        assert ap[1] < 1.3 * prevalence[1], (kind, ap, prevalence)
    elif kind == "mlp":
        assert ap[1] > 1.5 * prevalence[1], (kind, ap, prevalence)
    else:
        assert ap[1] > max(0.6, 2.5 * prevalence[1]), (kind, ap, prevalence)
    # stitched predictions do not jump where windows start
    assert boundary_jump_summary([(probs, tcfg.window.length, 8)])["ratio"] <= 1.5


def test_fit_is_repeatable_with_a_seed(tcfg):
    rng = np.random.default_rng(2)
    train = [planted_video(rng, n=120, vid=f"t{i}") for i in range(2)]
    val = [planted_video(rng, n=120, vid="val")]
    cfg = load_config(None, ["train.window.length=32", "train.window.stride=16", "train.epochs=2",
                             "train.lstm.units=8"]).train
    a = fit_head("lstm", cfg, train, val, [0, 1], seed=7, label="a", progress=False)
    b = fit_head("lstm", cfg, train, val, [0, 1], seed=7, label="b", progress=False)
    x = val[0].features
    np.testing.assert_array_equal(predict_video(a.model, x, 32, 8), predict_video(b.model, x, 32, 8))


def test_search_trials_grid_and_random():
    cfg = load_config(None, ["train.search.space={window.length: [32, 64], lstm.units: [8, 16, 32]}"])
    grid = search_trials(cfg)
    assert len(grid) == 6 and {"window.length": 32, "lstm.units": 8} in grid
    rnd = search_trials(cfg.replace(**{"train.search.algorithm": "random", "train.search.n_trials": 3}))
    assert len(rnd) == 3 and all(t in grid for t in rnd)
    assert search_trials(load_config(None)) == [{}]


def rising_video(rng, n=400, vid="v"):
    """Feature 0 is a triangle wave between -1 and 1 (bouts of 3-10 frames up, then down);
    the behaviour is "rising". A frame's level is as likely in a rising bout as in a falling
    one, so only the change to the previous frame tells them apart."""
    level, y, t = np.zeros(n, np.float32), np.zeros((n, 1), np.int8), 0
    rising = bool(rng.integers(2))
    while t < n:
        steps = int(rng.integers(3, 11))
        ramp = -1 + (2 * np.arange(steps) + 1) / steps  # the same levels up as down
        ramp = ramp if rising else ramp[::-1]
        level[t:t + steps], y[t:t + steps, 0] = ramp[:n - t], int(rising)
        t, rising = t + steps, not rising
    x = rng.normal(0, 1, (n, DIM)).astype(np.float32)
    x[:, 0] = level
    return VideoData(vid, x, Labels(("rising",), y), 10.0, Path(f"{vid}.h5"))


@pytest.mark.parametrize("delta", [False, True])
def test_linear_with_delta_sees_the_previous_frame(delta):
    tcfg = small("train.learning_rate=0.02", "train.linear.l2=0", "train.input_dropout=0",
                 f"train.linear.delta={str(delta).lower()}")
    rng = np.random.default_rng(5)
    train = [rising_video(rng, vid=f"t{i}") for i in range(3)]
    val, test = rising_video(rng, vid="val"), rising_video(rng, vid="test")
    res = fit_head("linear", tcfg, train, [val], [0], seed=1, label="linear", progress=False)
    probs = predict_video(res.model, test.features, tcfg.window.length, 8)
    ap, prevalence = average_precision_score(test.labels.matrix[:, 0], probs[:, 0]), test.labels.matrix.mean()
    if delta:
        assert ap > 0.95, (ap, prevalence)
    else:
        assert ap < prevalence + 0.15, (ap, prevalence)


def test_frame_delta_appends_the_change_to_the_previous_frame():
    x = np.array([[[1.0, 2.0], [4.0, 0.0], [4.0, 5.0]]], np.float32)
    out = np.asarray(FrameDelta()(x))
    np.testing.assert_array_equal(out[0, :, 2:], [[0, 0], [3, -2], [0, 5]])  # the first frame: 0
    np.testing.assert_array_equal(out[..., :2], x)


@pytest.mark.parametrize("positions", ["relative", "sinusoidal"])
def test_transformer_ignores_padded_frames(positions):
    """The real frames of a window padded past a video's end (zero rows, the one padding
    policy) get the predictions of the same frames without padding; frames that are not
    zero do change them, so attention does look across frames."""
    cfg = small(f"train.transformer.positions={positions}", "train.transformer.max_distance=4")
    rng = np.random.default_rng(3)
    mean, variance = rng.normal(size=DIM), rng.uniform(0.5, 2.0, DIM)  # padding is not 0 after standardising
    model = build_model("transformer", cfg, DIM, 2, mean, variance, np.ones(2))
    for layer in model.layers:  # as if trained: position biases that differ by distance
        if getattr(layer, "max_distance", None) is not None:
            layer.relative.assign(rng.normal(0, 2, tuple(layer.relative.shape)).astype(np.float32))
    x = rng.normal(size=(2, 32, DIM)).astype(np.float32)
    real = x[:, :20]
    padded = x.copy()
    padded[:, 20:] = 0.0
    alone = np.asarray(model(real, training=False))
    np.testing.assert_allclose(np.asarray(model(padded, training=False))[:, :20], alone, atol=1e-6)
    changed = np.asarray(model(x, training=False))[:, :20]  # frames 20-31 real this time
    assert np.abs(changed - alone).max() > 1e-3
    assert np.isfinite(np.asarray(model(np.zeros((1, 8, DIM), np.float32)))).all()  # all padding


def test_per_stream_projection_sees_each_stream_apart_and_reloads(tmp_path):
    """train.fusion.projection: a Dense per stream (its own columns only), then the head."""
    rng = np.random.default_rng(1)
    dims = (10, 6)  # two streams of one input set
    model = build_model("lstm", small("train.fusion.projection=3"), DIM, 2, np.zeros(DIM), np.ones(DIM),
                        np.ones(2), stream_dims=dims)
    kernels = [model.get_layer(f"stream_{i}_projection").kernel.shape for i in (0, 1)]
    assert [tuple(k) for k in kernels] == [(10, 3), (6, 3)]
    assert model.get_layer("fused").output.shape[-1] == 6
    x = rng.normal(size=(2, 20, DIM)).astype(np.float32)
    first = model.get_layer("stream_0").output
    probe = keras.Model(model.input, first)
    np.testing.assert_array_equal(np.asarray(probe(x)), x[..., :10])  # standardised with mean 0, var 1
    save_model(model, tmp_path / "m.keras")
    np.testing.assert_array_equal(np.asarray(load_model(tmp_path / "m.keras")(x)), np.asarray(model(x)))
    # without stream widths the whole input is one stream
    one = build_model("linear", small("train.fusion.projection=4"), DIM, 2, np.zeros(DIM), np.ones(DIM), np.ones(2))
    assert tuple(one.get_layer("stream_0_projection").kernel.shape) == (DIM, 4)
