"""The ``transformer`` head: a temporal self-attention encoder over a window of frames.

The standardised embeddings are projected to ``train.transformer.width`` dimensions and
pass ``layers`` pre-norm encoder layers (layer norm, multi-head self-attention over the
window's frames, residual; layer norm, a GELU feed-forward layer of ``ff`` units,
residual; dropout after attention weights, attention and feed-forward), then a final layer
norm feeds :func:`.models.build_model`'s sigmoid output layer.

Positions
---------
``sinusoidal``: the fixed sine/cosine encoding of the frame's index in the window is added
to the projection (computed for the window's length at each call, so any length runs).
``relative``: no absolute position; each head adds a learned bias to its attention logits
that depends on the signed distance from the query frame to the key frame, clipped to
``max_distance`` frames (farther frames share the bias of the clip distance). A frame's
context is then seen the same way wherever it sits in the window.

Padding
-------
Windows past the end of a video are padded with zero feature rows (the one padding policy
of :mod:`.windows`). The mask is derived from the *raw* input, before standardisation:
a frame whose embedding is all zeros is padding (:class:`PaddingMask`), and no frame
attends to it (its logits get ``-1e9``, so its attention weight is exactly 0 in float32).
Predictions on a window's real frames are therefore those of the window without padding.

A real frame whose embedding is exactly all zeros would be taken for padding: it still
gets its own prediction (it attends to the window's other frames), but the others do not
attend to it. In practice that does not happen by accident: a backbone embedding is the
global pooling of hundreds or thousands of feature maps, and is all zeros only if every
one of them is zero everywhere in the frame. Features from another tool that write zero
rows for missing frames get exactly this treatment, which suits a missing frame. A window
of only zero rows gets uniform attention (finite outputs, no division by zero).

Every layer here is registered for Keras serialisation (``package="mouse_pipeline"``),
so a saved ``.keras`` model loads with ``safe_mode=True`` and predicts identically.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ..config import TrainConfig

#: Added to the attention logits of padded key frames.
MASKED_LOGIT = -1e9


@keras.saving.register_keras_serializable(package="mouse_pipeline")
class PaddingMask(keras.layers.Layer):
    """``(B, T, D) -> (B, T)`` float: 1 for a real frame, 0 for a padded (all-zero) one."""

    def call(self, x):
        return ops.cast(ops.any(ops.not_equal(x, 0.0), axis=-1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])


@keras.saving.register_keras_serializable(package="mouse_pipeline")
class SinusoidalPositions(keras.layers.Layer):
    """Adds the sine/cosine encoding of each frame's index in the window (no weights).

    Dimension ``2i`` holds ``sin(t / 10000**(2i/d))`` and ``2i + 1`` its cosine, for
    frame index ``t`` and width ``d``.
    """

    def call(self, x):
        length, width = ops.shape(x)[1], x.shape[-1]
        half = (width + 1) // 2
        t = ops.cast(ops.arange(length), "float32")[:, None]
        freq = ops.exp(-math.log(10000.0) * ops.cast(ops.arange(half), "float32") * 2.0 / width)
        angle = t * freq[None, :]
        enc = ops.reshape(ops.stack([ops.sin(angle), ops.cos(angle)], axis=-1), (-1, 2 * half))
        return x + ops.cast(enc[:, :width], x.dtype)[None]


@keras.saving.register_keras_serializable(package="mouse_pipeline")
class TemporalSelfAttention(keras.layers.Layer):
    """Multi-head self-attention over frames that ignores padded frames.

    Called on ``[x, valid]``: ``x`` ``(B, T, d)`` and ``valid`` ``(B, T)`` from
    :class:`PaddingMask`. Returns ``(B, T, d)``.

    Parameters
    ----------
    heads
        Attention heads; ``d`` must be a multiple of it.
    dropout
        Dropout on the attention weights (training only).
    max_distance
        With a value: a learned bias per head and clipped signed distance
        (``2 * max_distance + 1`` values per head) added to the logits; None: no bias.
    """

    def __init__(self, heads: int, dropout: float = 0.0, max_distance: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.dropout, self.max_distance = int(heads), float(dropout), max_distance
        self.weight_dropout = keras.layers.Dropout(self.dropout)

    def build(self, input_shape):
        width = int(input_shape[0][-1])
        if width % self.heads:
            raise ValueError(f"width {width} is not a multiple of {self.heads} heads")
        per_head = width // self.heads
        for name in ("query", "key", "value"):
            setattr(self, name, self.add_weight(shape=(width, self.heads, per_head), name=name,
                                                initializer="glorot_uniform"))
            setattr(self, f"{name}_bias", self.add_weight(shape=(self.heads, per_head),
                                                          name=f"{name}_bias", initializer="zeros"))
        self.out = self.add_weight(shape=(self.heads, per_head, width), name="out",
                                   initializer="glorot_uniform")
        self.out_bias = self.add_weight(shape=(width,), name="out_bias", initializer="zeros")
        if self.max_distance is not None:
            self.relative = self.add_weight(shape=(2 * self.max_distance + 1, self.heads),
                                            name="relative_bias", initializer="zeros")

    def call(self, inputs, training=None):
        x, valid = inputs
        per_head = x.shape[-1] // self.heads
        q = ops.einsum("btd,dhe->bhte", x, self.query) + self.query_bias[None, :, None, :]
        k = ops.einsum("btd,dhe->bhte", x, self.key) + self.key_bias[None, :, None, :]
        v = ops.einsum("btd,dhe->bhte", x, self.value) + self.value_bias[None, :, None, :]
        logits = ops.einsum("bhqe,bhke->bhqk", q, k) / math.sqrt(per_head)
        if self.max_distance is not None:
            pos = ops.arange(ops.shape(x)[1])
            distance = ops.clip(pos[None, :] - pos[:, None], -self.max_distance, self.max_distance)
            bias = ops.take(self.relative, distance + self.max_distance, axis=0)  # (T, T, heads)
            logits = logits + ops.transpose(bias, (2, 0, 1))[None]
        logits = logits + (1.0 - ops.cast(valid, logits.dtype))[:, None, None, :] * MASKED_LOGIT
        weights = self.weight_dropout(ops.softmax(logits, axis=-1), training=training)
        context = ops.einsum("bhqk,bhke->bhqe", weights, v)
        return ops.einsum("bhte,hed->btd", context, self.out) + self.out_bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "dropout": self.dropout,
                "max_distance": self.max_distance}


def transformer_body(x, valid, cfg: TrainConfig):
    """The encoder on standardised embeddings ``x`` with the padding mask ``valid``."""
    t = cfg.transformer
    x = keras.layers.Dense(t.width, name="project")(x)
    if t.positions == "sinusoidal":
        x = SinusoidalPositions(name="positions")(x)
    max_distance = t.max_distance if t.positions == "relative" else None

    def dropout(h, name):
        return keras.layers.Dropout(t.dropout, name=name)(h) if t.dropout > 0 else h

    for i in range(t.layers):
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"attention_norm_{i}")(x)
        h = TemporalSelfAttention(t.heads, t.dropout, max_distance, name=f"attention_{i}")([h, valid])
        x = keras.layers.Add(name=f"attention_residual_{i}")([x, dropout(h, f"attention_dropout_{i}")])
        h = keras.layers.LayerNormalization(epsilon=1e-6, name=f"ff_norm_{i}")(x)
        h = keras.layers.Dense(t.ff, activation="gelu", name=f"ff_in_{i}")(h)
        h = keras.layers.Dense(t.width, name=f"ff_out_{i}")(dropout(h, f"ff_dropout_{i}"))
        x = keras.layers.Add(name=f"ff_residual_{i}")([x, dropout(h, f"ff_out_dropout_{i}")])
    return keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
