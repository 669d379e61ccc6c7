"""Registry of frozen CNN backbones: name -> Keras application without its top.

Each backbone takes RGB frames with values 0..255 at its input size and returns one
embedding per frame (global average pooling). The application's own preprocessing is
part of the model, so callers feed raw pixels. Weights are ``imagenet`` (Keras's
download, cached in ``~/.keras/models``; offline and not cached, a clear error),
``random`` (untrained, seeded so that every process builds the same network; logged
loudly) or a path to a weights file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .errors import ConfigError, PipelineError

log = logging.getLogger(__name__)

RANDOM_SEED = 1234  # random weights are the same in every process


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone."""

    constructor: str
    default_size: int
    dim: int
    preprocessing: str  # "tf" (x/127.5-1), "caffe" (BGR minus ImageNet mean), "included"
    weight_file: str  # Keras's cached file name for the ImageNet notop weights
    extra: tuple[tuple[str, Any], ...] = ()


REGISTRY: dict[str, BackboneSpec] = {
    "resnet50v2": BackboneSpec("ResNet50V2", 224, 2048, "tf",
                               "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "inception_resnet_v2": BackboneSpec("InceptionResNetV2", 299, 1536, "tf",
                                        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": BackboneSpec("ResNet50", 224, 2048, "caffe",
                             "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "efficientnet_b0": BackboneSpec("EfficientNetB0", 224, 1280, "included", "efficientnetb0_notop.h5"),
    "mobilenet_v3_small": BackboneSpec("MobileNetV3Small", 224, 576, "included",
                                       "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                                       (("include_preprocessing", True),)),
    "mobilenet_v3_large": BackboneSpec("MobileNetV3Large", 224, 960, "included",
                                       "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
                                       (("include_preprocessing", True),)),
}


def keras_models_dir() -> Path:
    """Where Keras keeps downloaded weights (``$KERAS_HOME/models`` or ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def weights_id(weights: str) -> str:
    """``imagenet``, ``random``, or ``sha256:<hex>`` of a local weights file."""
    if weights in ("imagenet", "random"):
        return weights
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(f"extract.weights: {path} is not a file; use imagenet, random or a path "
                          "to a weights file")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def get_spec(name: str) -> BackboneSpec:
    """The registry entry of a backbone (ConfigError listing the names when unknown)."""
    if name not in REGISTRY:
        raise ConfigError(f"extract.backbones: unknown backbone {name!r}; choose from "
                          f"{', '.join(REGISTRY)}")
    return REGISTRY[name]


class Backbone:
    """A built, frozen backbone and its facts (name, input size, dim, weights identity)."""

    def __init__(self, name: str, model: keras.Model, input_size: int, dim: int, weights_id: str,
                 precision: str, jit_compile: bool):
        self.name, self.model, self.input_size, self.dim = name, model, input_size, dim
        self.weights_id, self.precision = weights_id, precision
        self._call = tf.function(lambda x: self.model(x, training=False), jit_compile=jit_compile,
                                 reduce_retracing=True)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Embeddings ``(B, dim)`` float32 of a batch of RGB frames ``(B, S, S, 3)``."""
        x = tf.convert_to_tensor(np.asarray(batch, dtype=np.float32))
        return np.asarray(self._call(x), dtype=np.float32)


def _preprocess(kind: str, x):
    if kind == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(x)
    if kind == "caffe":
        # RGB -> BGR and minus the ImageNet mean, as a fixed 1x1 convolution.
        conv = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
        y = conv(x)
        perm = np.zeros((1, 1, 3, 3), np.float32)
        perm[0, 0, 2, 0] = perm[0, 0, 1, 1] = perm[0, 0, 0, 2] = 1.0
        conv.set_weights([perm, -np.array([103.939, 116.779, 123.68], np.float32)])
        return y
    return x


def build_backbone(name: str, weights: str, input_size: int | None = None,
                   precision: str = "float32", jit_compile: bool = False) -> Backbone:
    """Build a frozen backbone with its preprocessing inside.

    Parameters
    ----------
    name
        Registry name (see :data:`REGISTRY`).
    weights
        ``imagenet``, ``random`` or a path to a weights file.
    input_size
        Square input side in pixels (None: the backbone's default).
    precision
        ``float32``, or ``bfloat16`` / ``float16`` mixed precision (output stays float32).
    jit_compile
        Compile the forward pass with XLA.
    """
    spec = get_spec(name)
    size = int(input_size or spec.default_size)
    wid = weights_id(weights)
    if weights == "imagenet":
        cached = keras_models_dir() / spec.weight_file
        if not cached.is_file():
            log.info("%s: ImageNet weights not cached at %s; trying to download", name, cached)
    if weights == "random":
        log.warning("%s: RANDOM (untrained) weights: embeddings carry no learned features; "
                    "use extract.weights: imagenet for real data", name)
        keras.utils.set_random_seed(RANDOM_SEED)
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}[precision]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        inputs = keras.Input((size, size, 3), name="frames")
        x = _preprocess(spec.preprocessing, inputs)
        kw = dict(spec.extra)
        ctor = getattr(keras.applications, spec.constructor)
        try:
            base = ctor(include_top=False, weights=None if weights == "random" else weights,
                        input_shape=(size, size, 3), pooling="avg", **kw)
        except (OSError, ValueError) as exc:
            raise _weights_error(name, spec, weights, exc) from None
        except Exception as exc:  # keras.utils.get_file raises plain Exception on fetch failure
            if "fetch failure" in str(exc) or "URL" in str(exc):
                raise _weights_error(name, spec, weights, exc) from None
            raise
        base.trainable = False
        y = base(x, training=False)
        y = keras.layers.Activation("linear", dtype="float32", name="embedding")(y)
        model = keras.Model(inputs, y, name=f"{name}_frozen")
        model.trainable = False
    finally:
        keras.config.set_dtype_policy(previous)
    log.info("backbone %s: input %d px, %d-d, weights %s, precision %s", name, size, spec.dim,
             wid if len(wid) < 20 else wid[:19] + "...", precision)
    return Backbone(name, model, size, spec.dim, wid, precision, jit_compile)


def _weights_error(name: str, spec: BackboneSpec, weights: str, exc: Exception) -> PipelineError:
    if weights == "imagenet":
        return PipelineError(
            f"{name}: ImageNet weights could not be downloaded ({type(exc).__name__}); put "
            f"{spec.weight_file} into {keras_models_dir()}/ (or set extract.weights to a local "
            "weights file; extract.weights=random only to try the pipeline)")
    return PipelineError(f"{name}: cannot load weights from {weights}: {exc}")


def embedding_spread(emb: np.ndarray) -> float:
    """Mean over dimensions of the standard deviation across frames (0 = constant)."""
    emb = np.asarray(emb, dtype=np.float64)
    return float(emb.std(axis=0).mean()) if len(emb) > 1 else float("nan")
