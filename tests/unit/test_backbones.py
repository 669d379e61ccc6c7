"""Backbone registry and building (random weights, tiny inputs, no network)."""

import hashlib

import keras
import numpy as np
import pytest

from mouse_pipeline import backbones as bb
from mouse_pipeline.errors import ConfigError, PipelineError
from mouse_pipeline.features import spread

SIZE = 32


@pytest.fixture(scope="module")
def small():
    return bb.build_backbone("mobilenet_v3_small", "random", SIZE)


@pytest.fixture(scope="module")
def resnet():
    return bb.build_backbone("resnet50v2", "random", SIZE)


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (5, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture
def no_download(monkeypatch, tmp_path):
    """An empty Keras cache, and a download that fails like an offline machine's."""
    from keras.src.utils import file_utils

    calls = []

    def offline(fname=None, origin=None, **kwargs):
        calls.append(fname)
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("name", list(bb.REGISTRY))
def test_registry_facts_are_those_of_the_built_network(name):
    spec = bb.get_spec(name)
    assert spec.weight_file.endswith(".h5") and "notop" in spec.weight_file.replace("no_top", "notop")
    # the embedding size: the built backbone at its smallest input, untrained
    built = bb.build_backbone(name, "random", spec.min_size)
    assert built.dim == spec.dim and built.model.output.shape[1:] == (spec.dim,)
    emb = built.embed(np.random.default_rng(0).integers(0, 256, (2, spec.min_size, spec.min_size, 3), np.uint8))
    assert emb.shape == (2, spec.dim) and np.isfinite(emb).all()
    # the smallest input: Keras refuses one pixel less
    ctor = getattr(keras.applications, spec.constructor)
    below = spec.min_size - 1
    with pytest.raises(ValueError, match=f"at least {spec.min_size}x{spec.min_size}"):
        ctor(include_top=False, weights=None, input_shape=(below, below, 3), **dict(spec.options))
    # the default input: the application's own (MobileNetV3 declares none without weights)
    if not name.startswith("mobilenet_v3"):
        full = ctor(include_top=True, weights=None, **dict(spec.options))
        assert full.input_shape[1:] == (spec.default_size, spec.default_size, 3)
    assert bb.resolve_input_size(name) == spec.default_size


def test_unknown_backbone_lists_the_registry():
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet18'; choose from resnet50v2, inception_resnet_v2, "
                       r".*mobilenet_v3_large \(features made by another tool .*cache import --name resnet18`\)$"):
        bb.build_backbone("resnet18", "random")


def test_input_size_below_the_network_minimum():
    with pytest.raises(ConfigError, match="inception_resnet_v2 needs at least 75 px, got 64"):
        bb.build_backbone("inception_resnet_v2", "random", 64)


@pytest.mark.parametrize("fixture, dim", [("small", 576), ("resnet", 2048)])
def test_built_backbone_is_frozen_and_embeds_uint8_batches(request, fixture, dim, frames):
    backbone = request.getfixturevalue(fixture)
    assert (backbone.input_size, backbone.dim, backbone.weights_id) == (SIZE, dim, "random")
    assert backbone.model.trainable is False and backbone.model.trainable_weights == []
    assert backbone.model.output.shape[1:] == (dim,)
    emb = backbone.embed(frames)
    assert emb.shape == (5, dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
    direct = np.asarray(backbone.model(frames.astype(np.float32), training=False))
    np.testing.assert_allclose(emb, direct, rtol=1e-4, atol=1e-5)
    # float input, and batches of another size (the last batch of a video), give the same rows
    np.testing.assert_allclose(backbone.embed(frames[:2].astype(np.float32)), emb[:2], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected frames of shape \(B, 32, 32, 3\)"):
        backbone.embed(frames[:, :16])


def test_random_weights_are_the_same_network_every_time(small, frames, caplog):
    with caplog.at_level("WARNING", logger="mouse_pipeline.backbones"):
        again = bb.build_backbone("mobilenet_v3_small", "random", SIZE)
    assert "RANDOM (untrained) weights" in caplog.text
    np.testing.assert_array_equal(again.embed(frames), small.embed(frames))


def test_resnet_random_embeddings_vary_across_frames(resnet, frames):
    assert spread.embedding_spread(resnet.embed(frames)) > 1e-4


def test_caffe_preprocessing_is_bgr_minus_imagenet_mean():
    inputs = keras.Input((1, 1, 3))
    model = keras.Model(inputs, bb._preprocess("caffe", inputs))
    out = np.asarray(model(np.array([[[[10.0, 20.0, 30.0]]]], np.float32)))[0, 0, 0]
    np.testing.assert_allclose(out, [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


def test_mixed_precision_is_scoped_and_output_float32(frames):
    before = keras.config.dtype_policy().name
    backbone = bb.build_backbone("mobilenet_v3_small", "random", SIZE, precision="bfloat16")
    assert keras.config.dtype_policy().name == before
    assert any(layer.dtype_policy.name == "mixed_bfloat16" for layer in backbone.model.layers)
    emb = backbone.embed(frames)
    assert emb.dtype == np.float32 and emb.shape == (5, 576)
    with pytest.raises(ConfigError, match="extract.precision"):
        bb.build_backbone("mobilenet_v3_small", "random", SIZE, precision="int8")


def test_weights_file_is_loaded_and_identified_by_hash(tmp_path, frames):
    app = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3),
                                              pooling="avg")
    path = tmp_path / "mine.weights.h5"
    app.save_weights(path)
    backbone = bb.build_backbone("mobilenet_v3_small", str(path), SIZE)
    assert backbone.weights_id == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert backbone.weights_id == bb.weights_id(str(path))
    np.testing.assert_allclose(backbone.embed(frames), np.asarray(app(frames.astype(np.float32))),
                               rtol=1e-4, atol=1e-5)


def test_missing_weights_file(tmp_path):
    missing = tmp_path / "nope.h5"
    with pytest.raises(ConfigError, match=f"extract.weights: {missing} is not a file"):
        bb.build_backbone("mobilenet_v3_small", str(missing), SIZE)


def test_weights_file_of_another_network(tmp_path):
    path = tmp_path / "bad.weights.h5"
    path.write_bytes(b"not weights")
    with pytest.raises(PipelineError, match="cannot load weights from .*bad.weights.h5"):
        bb.build_backbone("mobilenet_v3_small", str(path), SIZE)


def test_imagenet_offline_and_not_cached_names_the_file(no_download, tmp_path):
    folder = tmp_path / "keras_home" / "models"
    assert bb.keras_models_dir() == folder
    with pytest.raises(PipelineError) as err:
        bb.build_backbone("resnet50v2", "imagenet", SIZE)
    msg = str(err.value)
    assert "\n" not in msg
    assert "put resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5 into " + str(folder) in msg
    assert "--set extract.weights=random" in msg and "URL fetch failure" in msg
    assert no_download == ["resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"]


def test_imagenet_uses_the_cached_file_without_downloading(no_download, tmp_path):
    folder = tmp_path / "keras_home" / "models"
    folder.mkdir(parents=True)
    cached = folder / bb.get_spec("mobilenet_v3_small").weight_file
    cached.write_bytes(b"a damaged download")
    with pytest.raises(PipelineError, match=f"cannot load weights from {cached}"):
        bb.build_backbone("mobilenet_v3_small", "imagenet", SIZE)
    assert no_download == []


def test_embedding_spread():
    assert spread.embedding_spread(np.ones((10, 4))) == 0.0
    emb = np.array([[0.0, 1.0], [2.0, 1.0]])
    assert spread.embedding_spread(emb) == pytest.approx(0.5)  # std 1 and 0
    assert np.isnan(spread.embedding_spread(np.ones((1, 4))))
    # read a chunk at a time, a long video gives numpy's figure without being held whole
    long = np.random.default_rng(1).normal(3, 2, (1000, 5))
    assert spread.embedding_spread(long, chunk=64) == pytest.approx(long.std(axis=0).mean(), rel=1e-12)
    assert spread.is_nearly_constant(1e-9) and not spread.is_nearly_constant(0.1)
    assert not spread.is_nearly_constant(float("nan"))


def test_xla_path_pads_the_short_last_batch_and_keeps_its_frames(resnet, frames):
    jit = bb.Backbone(resnet.name, resnet.model, SIZE, resnet.dim, resnet.weights_id, jit_compile=True)
    assert jit.pads and not resnet.pads  # the plain TensorFlow path accepts any batch size
    more = np.random.default_rng(1).integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    calls = []
    real = jit._call
    jit._call = lambda batch: calls.append(batch.shape) or real(batch)
    jit.warm_up(8)
    full = jit.embed(more)
    short = jit.embed(frames)  # 5 frames after batches of 8: padded to 8, cut back to 5
    assert calls == [(8, SIZE, SIZE, 3)] * 3
    assert short.shape == (5, resnet.dim) and full.shape == (8, resnet.dim)
    np.testing.assert_allclose(short, resnet.embed(frames), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(full, resnet.embed(more), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="the TensorFlow graph path")
def test_tensorflow_forward_is_traced_once_for_every_batch_size():
    # a video's short last batch must not trace the backbone again (about 0.6 s for
    # resnet50v2 on a CPU, counted in that video's frames/s)
    traces = []

    class Probe(keras.layers.Layer):
        def call(self, x):
            traces.append(tuple(x.shape))
            return keras.ops.mean(x, axis=(1, 2))

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, Probe()(inp))
    forward = bb.compiled_forward(model)
    traces.clear()  # building the model called the layer symbolically
    rng = np.random.default_rng(0)
    for n in (4, 3, 1, 4, 2):
        batch = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        np.testing.assert_allclose(np.asarray(forward(batch)), batch.mean(axis=(1, 2)), rtol=1e-6)
    assert traces == [(None, 8, 8, 3)]


def test_warm_up_traces_before_the_first_video(small):
    fresh = bb.Backbone(small.name, small.model, SIZE, small.dim, small.weights_id)
    calls = []
    real = fresh._call
    fresh._call = lambda batch: calls.append(batch.shape) or real(batch)
    fresh.warm_up(32)
    # the plain graph takes any batch size: one frame traces it
    assert calls == [(1, SIZE, SIZE, 3)]
