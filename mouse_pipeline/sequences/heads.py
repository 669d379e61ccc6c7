"""Per-frame heads: ``linear`` (logistic regression) and ``mlp`` (one hidden layer).

Baselines beside the temporal models: each frame's probabilities depend on that frame's
standardised embedding alone, or, with ``delta``, also on its difference to the previous
frame (``x[t] - x[t-1]``, both standardised), which is a receptive field of two frames.
The first frame of a window has no previous frame in the window; its difference is zero.
At inference that frame sits at the edge of a tapered window, where its weight is near zero
(:mod:`.windows`), so stitched predictions do not depend on where windows start.

:func:`.models.build_model` appends the difference (:func:`add_delta`) to the standardised
embeddings before input dropout. ``linear`` has no layer of its own: the output layer on
those inputs is one ``Dense`` sigmoid per behaviour, a logistic regression, with the L2
penalty of ``train.linear.l2`` on its weights; ``mlp`` puts :func:`mlp_body` before it.
With ``train.linear.solver: lbfgs`` (the default) the linear head's weights are fitted to
convergence (:mod:`.converged`) and it has no input dropout; with ``adam`` it is trained
on windows like the other heads.
"""

from __future__ import annotations

import keras
from keras import ops

from ..config import TrainConfig


@keras.saving.register_keras_serializable(package="mouse_pipeline")
class FrameDelta(keras.layers.Layer):
    """``(B, T, D) -> (B, T, 2D)``: each frame followed by its difference to the previous one.

    The first frame's difference is zero (it is compared with itself).
    """

    def call(self, x):
        previous = ops.concatenate([x[:, :1], x[:, :-1]], axis=1)
        return ops.concatenate([x, x - previous], axis=-1)

    def compute_output_shape(self, input_shape):
        dim = input_shape[-1]
        return (*input_shape[:-1], None if dim is None else 2 * dim)


def uses_delta(kind: str, cfg: TrainConfig) -> bool:
    """Whether head ``kind`` is fed each frame's difference to the previous frame."""
    return (kind == "linear" and cfg.linear.delta) or (kind == "mlp" and cfg.mlp.delta)


def add_delta(x):
    """``x`` with its frame-to-frame difference appended (:class:`FrameDelta`)."""
    return FrameDelta(name="delta")(x)


def mlp_body(x, cfg: TrainConfig):
    """One hidden ReLU layer per frame (weights shared over frames), then dropout."""
    m = cfg.mlp
    x = keras.layers.Dense(m.units, activation="relu", name="hidden")(x)
    if m.dropout > 0:
        x = keras.layers.Dropout(m.dropout, name="hidden_dropout")(x)
    return x
