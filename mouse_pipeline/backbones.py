"""Registry of frozen CNN backbones: name -> Keras application without its top.

A built :class:`Backbone` takes RGB frames with values 0..255 (``uint8`` or float) of
shape ``(S, S, 3)`` and returns one ``float32`` embedding per frame (global average
pooling of the last feature map). The application's own preprocessing is part of the
model, so callers feed raw pixels.

Weights
-------
``imagenet``
    Keras's notop weight file in ``$KERAS_HOME/models`` (default ``~/.keras/models``),
    downloaded once. Offline and not cached: a :class:`PipelineError` naming the file
    and the folder to put it in. Never a silent fall-back.
``random``
    Untrained (``weights=None``), the same network in every process (the initialisers
    are seeded with :data:`RANDOM_SEED`). Logged as a warning: such embeddings carry no
    learned features, and for some networks (MobileNetV3, EfficientNet) they are nearly
    constant across frames (see :func:`mouse_pipeline.features.spread.embedding_spread`).
a path
    A notop weights file (``.h5`` / ``.weights.h5``) loaded with ``load_weights``; its
    identity in the cache is ``sha256:<hex>`` of the file.

The registry (names, input sizes, embedding sizes) and the weights' identity are plain
data: importing this module does not import Keras. Keras (and TensorFlow) are imported
when a backbone is built or run, so commands that only judge the cache start fast.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from . import devices
from .errors import ConfigError, PipelineError
from .fileio import first_line, sha256_file

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

RANDOM_SEED = 1234  # random weights are the same network in every process
PRECISIONS: Mapping[str, str] = MappingProxyType(
    {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"})


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone.

    Attributes
    ----------
    constructor
        Name of the ``keras.applications`` function.
    default_size, min_size
        Default and smallest square input side, pixels.
    dim
        Embedding size (channels of the last feature map).
    preprocessing
        ``tf`` (x / 127.5 - 1), ``caffe`` (RGB -> BGR minus the ImageNet mean) or
        ``included`` (the application rescales 0..255 input itself).
    weight_file
        File name of Keras's ImageNet notop weights in its ``models`` cache folder.
    options
        Extra keyword arguments of the constructor.
    """

    constructor: str
    default_size: int
    dim: int
    preprocessing: str
    weight_file: str
    min_size: int = 32
    options: tuple[tuple[str, Any], ...] = ()


REGISTRY: Mapping[str, BackboneSpec] = MappingProxyType({
    "resnet50v2": BackboneSpec(
        "ResNet50V2", 224, 2048, "tf", "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "inception_resnet_v2": BackboneSpec(
        "InceptionResNetV2", 299, 1536, "tf",
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=75),
    "resnet50": BackboneSpec(
        "ResNet50", 224, 2048, "caffe", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "efficientnet_b0": BackboneSpec("EfficientNetB0", 224, 1280, "included", "efficientnetb0_notop.h5"),
    "mobilenet_v3_small": BackboneSpec(
        "MobileNetV3Small", 224, 576, "included",
        "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
        options=(("include_preprocessing", True),)),
    "mobilenet_v3_large": BackboneSpec(
        "MobileNetV3Large", 224, 960, "included",
        "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        options=(("include_preprocessing", True),)),
})


def get_spec(name: str) -> BackboneSpec:
    """The registry entry of a backbone, or of the backbone a motion stream runs
    (``resnet50v2+motion``: resnet50v2's; see :mod:`.features.motion`).

    Raises
    ------
    ConfigError
        Unknown name; the message lists the registered names.
    """
    from .features.motion import is_motion_stream, stream_backbone

    base = stream_backbone(name)
    if base not in REGISTRY and is_motion_stream(name):
        raise ConfigError(f"extract.backbones: unknown backbone {base!r} of the motion stream {name!r}; "
                          f"a motion stream is <backbone>+motion, the backbone one of {', '.join(REGISTRY)}")
    if base not in REGISTRY:
        raise ConfigError(f"extract.backbones: unknown backbone {name!r}; choose from "
                          f"{', '.join(REGISTRY)} (features made by another tool are added to the "
                          f"cache with `mouse-pipeline cache import --name {name}`)")
    return REGISTRY[base]


def resolve_input_size(name: str, input_size: int | None = None) -> int:
    """The input side a backbone will use: ``input_size``, or its default when None.

    Raises
    ------
    ConfigError
        Unknown backbone, or a size below what the network accepts.
    """
    spec = get_spec(name)
    size = int(input_size or spec.default_size)
    if size < spec.min_size:
        raise ConfigError(f"extract.input_size: {name} needs at least {spec.min_size} px, got {size}")
    return size


def keras_models_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models`` or ``~/.keras/models``.

    Mirrors Keras's own rule (a home folder that cannot be written means ``/tmp/.keras``).
    """
    home = os.environ.get("KERAS_HOME")
    if not home:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(home) / "models"


def weights_id(weights: str) -> str:
    """Identity of a weights setting as recorded in the cache.

    Parameters
    ----------
    weights
        ``imagenet``, ``random`` or a path to a weights file.

    Returns
    -------
    str
        ``imagenet``, ``random`` or ``sha256:<hex>`` of the file's content.

    Raises
    ------
    ConfigError
        A path that is not an existing file.
    """
    if weights in ("imagenet", "random"):
        return weights
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"extract.weights: {path} is not a file; use imagenet, random or the "
                          "path of a notop weights file")
    return "sha256:" + sha256_file(path)


class Backbone:
    """A built, frozen backbone and the facts recorded with its embeddings.

    Attributes
    ----------
    name, input_size, dim
        Registry name, square input side (pixels), embedding size.
    weights_id
        ``imagenet``, ``random`` or ``sha256:<hex>`` (see :func:`weights_id`).
    precision
        Compute precision: ``float32``, ``bfloat16`` or ``float16`` (mixed).
    model
        The frozen ``keras.Model``: ``(B, S, S, 3)`` RGB 0..255 -> ``(B, dim)`` float32.
    """

    def __init__(self, name: str, model: keras.Model, input_size: int, dim: int, weights_id: str,
                 precision: str = "float32", jit_compile: bool = False):
        import keras

        self.name, self.model, self.input_size, self.dim = name, model, input_size, dim
        self.weights_id, self.precision, self.jit_compile = weights_id, precision, jit_compile
        self._call = compiled_forward(model, jit_compile)
        # XLA compiles one program per batch shape: pad short batches (a video's last) to
        # the largest size seen instead of compiling again for every remainder
        self.pads = jit_compile or keras.backend.backend() == "jax"
        self._largest = 0

    def __repr__(self) -> str:
        return (f"Backbone({self.name!r}, input_size={self.input_size}, dim={self.dim}, "
                f"weights={self.weights_id[:20]!r}, precision={self.precision!r})")

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embeddings of a batch of frames.

        Parameters
        ----------
        batch
            ``(B, S, S, 3)`` RGB frames, ``uint8`` (or float with values 0..255).

        Returns
        -------
        np.ndarray
            ``(B, dim)`` float32.
        """
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"{self.name}: expected frames of shape (B, {self.input_size}, "
                             f"{self.input_size}, 3), got {batch.shape}")
        if batch.dtype != np.uint8:
            batch = batch.astype(np.float32, copy=False)
        n = len(batch)
        if self.pads and 0 < n < self._largest:
            batch = np.concatenate([batch, np.zeros((self._largest - n, *batch.shape[1:]), batch.dtype)])
        self._largest = max(self._largest, n)
        return np.asarray(self._call(batch), dtype=np.float32)[:n]

    def warm_up(self, batch_size: int) -> None:
        """Trace (and on XLA paths compile) the forward pass for uint8 batches of up to
        ``batch_size`` frames now, once per backbone, so that it is not counted in the
        first video's frames/s. The plain TensorFlow graph takes any batch size, so one
        frame traces it."""
        n = batch_size if self.pads else 1
        self.embed(np.zeros((n, self.input_size, self.input_size, 3), np.uint8))


def compiled_forward(model: keras.Model, jit_compile: bool = False) -> Any:
    """One compiled inference function ``frames -> embeddings`` for Keras's backend.

    uint8 frames are sent to the device as uint8 and cast there (4x less host-to-device
    traffic than float32). TensorFlow (the installed default): a ``tf.function``, XLA
    when ``jit_compile``. JAX (``KERAS_BACKEND=jax``): ``jax.jit`` of the model's
    stateless call, always XLA. PyTorch: the eager model under ``no_grad``.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # one graph per input dtype, for any batch size: a video's short last batch does
        # not trace the model again (about 0.6 s for resnet50v2 on a CPU)
        frame_shape = tuple(model.input_shape[1:])
        fns: dict[Any, Any] = {}

        def tfn(batch: np.ndarray) -> Any:
            x = tf.convert_to_tensor(batch)
            fn = fns.get(x.dtype)
            if fn is None:
                fn = fns[x.dtype] = tf.function(
                    lambda x: model(tf.cast(x, tf.float32), training=False), jit_compile=jit_compile,
                    input_signature=[tf.TensorSpec((None, *frame_shape), x.dtype)])
            return fn(x)

        return tfn
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        @jax.jit
        def jfn(tv: Any, ntv: Any, x: Any) -> Any:
            y, _ = model.stateless_call(tv, ntv, x.astype(jnp.float32), training=False)
            return y

        # the variables' current buffers on every call: Keras's own predict may donate
        # (and so replace) them
        return lambda batch: jfn([v.value for v in model.trainable_variables],
                                 [v.value for v in model.non_trainable_variables], batch)
    if backend == "torch":
        import torch

        def tfn(batch: np.ndarray) -> Any:
            with torch.no_grad():
                x = keras.ops.convert_to_tensor(batch)
                return keras.ops.convert_to_numpy(model(keras.ops.cast(x, "float32"), training=False))

        return tfn
    raise PipelineError(f"Keras backend {backend!r} is not supported for extraction; "
                        "set KERAS_BACKEND to tensorflow, jax or torch")


def _preprocess(kind: str, x: Any) -> Any:
    """The application's input preprocessing as plain layers, computed in float32."""
    import keras

    if kind == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess", dtype="float32")(x)
    if kind == "caffe":
        # RGB -> BGR and minus the ImageNet mean, as a fixed 1x1 convolution.
        conv = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False, dtype="float32")
        y = conv(x)
        perm = np.zeros((1, 1, 3, 3), np.float32)
        perm[0, 0, 2, 0] = perm[0, 0, 1, 1] = perm[0, 0, 0, 2] = 1.0
        conv.set_weights([perm, -np.array([103.939, 116.779, 123.68], np.float32)])
        return y
    return x


def _imagenet_weights(name: str, spec: BackboneSpec) -> str:
    """``imagenet``, or the cached file's path when Keras has it already."""
    cached = keras_models_dir() / spec.weight_file
    if cached.is_file():
        log.info("%s: ImageNet weights from %s", name, cached)
        return str(cached)
    log.info("%s: ImageNet weights not in %s; downloading %s", name, cached.parent, spec.weight_file)
    return "imagenet"


def _download_error(name: str, spec: BackboneSpec, exc: BaseException) -> PipelineError:
    reason = first_line(exc)[:200]
    return PipelineError(
        f"{name}: ImageNet weights are not cached and could not be downloaded ({reason}); "
        f"put {spec.weight_file} into {keras_models_dir()}/, or set extract.weights to a local "
        "weights file; for a dry run only: --set extract.weights=random")


def _seeded_build(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` with Python's RNG (Keras's default initialiser seeds) fixed, then restored."""
    state = random.getstate()
    random.seed(RANDOM_SEED)
    try:
        return fn(*args, **kwargs)
    finally:
        random.setstate(state)


def build_backbone(name: str, weights: str, input_size: int | None = None,
                   precision: str = "float32", jit_compile: bool = False) -> Backbone:
    """Build a frozen backbone with its preprocessing inside.

    Parameters
    ----------
    name
        Registry name (see :data:`REGISTRY`).
    weights
        ``imagenet``, ``random`` or the path of a notop weights file.
    input_size
        Square input side in pixels (None: the backbone's default).
    precision
        ``float32``, or ``bfloat16`` / ``float16`` mixed precision for this model only
        (the embeddings are float32 either way).
    jit_compile
        Compile the forward pass with XLA (worth it on a GPU).

    Returns
    -------
    Backbone

    Raises
    ------
    ConfigError
        Unknown name, input size too small, unknown precision, missing weights file.
    PipelineError
        ImageNet weights neither cached nor downloadable, or a weights file that does
        not fit the network.
    """
    spec = get_spec(name)
    size = resolve_input_size(name, input_size)
    if precision not in PRECISIONS:
        raise ConfigError(f"extract.precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    wid = weights_id(weights)
    if weights == "random":
        log.warning("%s: RANDOM (untrained) weights: the embeddings carry no learned features; "
                    "use extract.weights: imagenet (or a weights file) for real data", name)
        source: str | None = None
    elif weights == "imagenet":
        source = _imagenet_weights(name, spec)
    else:
        source = str(weights)
    import keras  # only now: every setting above is checked without it

    where = devices.describe()  # before building: the first look for a GPU
    ctor = getattr(keras.applications, spec.constructor)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[precision])
    try:
        inputs = keras.Input((size, size, 3), name="frames", dtype="float32")
        x = _preprocess(spec.preprocessing, inputs)
        try:
            base = _seeded_build(ctor, include_top=False, weights=source, input_shape=(size, size, 3),
                                 pooling="avg", **dict(spec.options))
        except Exception as exc:  # Keras raises a bare Exception when a download fails
            if source == "imagenet" and not (keras_models_dir() / spec.weight_file).is_file():
                raise _download_error(name, spec, exc) from exc
            if source not in (None, "imagenet"):
                first = first_line(exc)[:200]
                raise PipelineError(f"{name}: cannot load weights from {source} ({first}); "
                                    f"expected the notop weights of {spec.constructor}") from exc
            raise
        base.trainable = False
        y = base(x, training=False)
        y = keras.layers.Activation("linear", dtype="float32", name="embedding")(y)
        model = keras.Model(inputs, y, name=f"{name}_frozen")
        model.trainable = False
    finally:
        keras.config.set_dtype_policy(previous)
    log.info("backbone %s: input %d px, %d-d, weights %s, precision %s, %s", name, size, spec.dim,
             wid if len(wid) < 24 else wid[:23] + "...", precision, where)
    return Backbone(name, model, size, spec.dim, wid, precision, jit_compile)
