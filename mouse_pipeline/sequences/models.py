"""Sequence models on cached embeddings: the heads of :data:`MODEL_KINDS`, one sigmoid per behaviour.

This module is the dispatcher: :func:`build_model` builds the parts every head shares
(input, standardisation, input dropout, the sigmoid output layer, the loss) and the body
of each kind: LSTM and TCN here, the per-frame ``linear`` and ``mlp`` in :mod:`.heads`,
the ``transformer`` in :mod:`.attention`.

Every model maps a sequence of per-frame embeddings (batch, time, dim) to per-frame
probabilities (batch, time, n_outputs). The time axis is left open (``None``), so a model
trained on windows runs on windows of any length at inference.

The embeddings are standardised inside the model by a ``Normalization`` layer whose mean
and variance come from the training videos of the fold only, so the statistics travel
with the saved ``.keras`` file. The loss is binary cross-entropy with one positive weight
per behaviour, masked: targets of -1 (frames not annotated, or padding past the end of a
video) contribute nothing.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import keras
import numpy as np
from keras import ops
from tcn import TCN

from ..config import TrainConfig
from ..errors import ConfigError, RunError
from ..fileio import atomic_path, first_line
from .attention import PaddingMask, SinusoidalPositions, TemporalSelfAttention, transformer_body
from .fusion import StreamColumns, project_streams
from .heads import FrameDelta, add_delta, mlp_body, uses_delta
from .search import check_window
from .search import tcn_receptive_field as tcn_receptive_field  # re-exported

log = logging.getLogger(__name__)

#: Every head ``build_model`` knows (``config_limits.MODEL_KINDS`` is the TF-free copy).
MODEL_KINDS = ("lstm", "tcn", "linear", "mlp", "transformer")

CUSTOM_OBJECTS = {"TCN": TCN, "FrameDelta": FrameDelta, "PaddingMask": PaddingMask,
                  "StreamColumns": StreamColumns,
                  "SinusoidalPositions": SinusoidalPositions,
                  "TemporalSelfAttention": TemporalSelfAttention}


@keras.saving.register_keras_serializable(package="mouse_pipeline")
class MaskedWeightedBCE(keras.losses.Loss):
    """Binary cross-entropy averaged over annotated frames, positives weighted per output.

    Parameters
    ----------
    pos_weight
        One weight per output for positive frames (negatives weigh 1).
    """

    def __init__(self, pos_weight=(1.0,), name="masked_weighted_bce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.pos_weight = [float(w) for w in pos_weight]

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0 - 1e-7)
        mask = ops.cast(ops.greater_equal(y_true, 0.0), "float32")
        target = y_true * mask
        w = ops.convert_to_tensor(np.asarray(self.pos_weight, dtype="float32"))
        bce = -(w * target * ops.log(y_pred) + (1.0 - target) * ops.log(1.0 - y_pred))
        per_sample = ops.sum(bce * mask, axis=(1, 2)) / ops.maximum(ops.sum(mask, axis=(1, 2)), 1.0)
        return per_sample

    def get_config(self):
        return {**super().get_config(), "pos_weight": self.pos_weight}


def positive_weights(labels: list[np.ndarray], max_weight: float = 50.0) -> np.ndarray:
    """Negatives / positives per output over annotated frames (training videos only).

    Parameters
    ----------
    labels
        Per-video int8 arrays (n_frames, n_outputs) with -1 for not annotated.
    max_weight
        Cap, so a nearly absent behaviour does not dominate the loss.
    """
    y = np.concatenate(labels, axis=0)
    pos = (y == 1).sum(axis=0).astype(float)
    neg = (y == 0).sum(axis=0).astype(float)
    return np.clip(neg / np.maximum(pos, 1.0), 1.0, max_weight)


def build_model(kind: str, cfg: TrainConfig, n_features: int, n_outputs: int,
                mean: np.ndarray, variance: np.ndarray, pos_weight: np.ndarray,
                stream_dims: tuple[int, ...] = ()) -> keras.Model:
    """Build and compile a sequence model.

    Parameters
    ----------
    kind
        One of :data:`MODEL_KINDS`.
    cfg
        Training settings (window length, the head's section, dropout, learning rate).
    n_features, n_outputs
        Embedding dimension and number of sigmoid outputs.
    mean, variance
        Standardisation statistics of the training videos (length ``n_features``).
    pos_weight
        Positive weight per output for the loss.
    stream_dims
        The widths of the input set's streams (summing to ``n_features``; empty: one
        stream), for ``cfg.fusion.projection`` (:mod:`.fusion`).
    """
    if kind not in MODEL_KINDS:
        raise ConfigError(f"train.models: unknown model {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    inputs = keras.Input(shape=(None, n_features), name="embeddings")
    x = keras.layers.Normalization(axis=-1, mean=np.asarray(mean, "float32"),
                                   variance=np.maximum(np.asarray(variance, "float32"), 1e-6),
                                   name="standardise")(inputs)
    if cfg.fusion.projection is not None:
        x = project_streams(x, stream_dims or (n_features,), cfg.fusion.projection)
    if uses_delta(kind, cfg):
        x = add_delta(x)
    if cfg.input_dropout > 0 and not (kind == "linear" and cfg.linear.solver == "lbfgs"):
        # (a converged linear head is not trained by Keras: dropout would never act)
        x = keras.layers.Dropout(cfg.input_dropout, name="input_dropout")(x)
    if kind == "lstm":
        units = cfg.lstm.units
        for i in range(cfg.lstm.layers):
            layer = keras.layers.LSTM(max(units, 1), return_sequences=True, name=f"lstm_{i}")
            if cfg.lstm.bidirectional:
                layer = keras.layers.Bidirectional(layer, name=f"bilstm_{i}")
            x = layer(x)
            if cfg.lstm.dropout > 0:
                x = keras.layers.Dropout(cfg.lstm.dropout, name=f"lstm_dropout_{i}")(x)
            units //= 2
    elif kind == "tcn":
        check_window(kind, cfg)
        t = cfg.tcn
        x = TCN(nb_filters=t.filters, kernel_size=t.kernel_size, nb_stacks=t.stacks,
                dilations=list(t.dilations), padding="causal" if t.causal else "same",
                use_skip_connections=True, dropout_rate=t.dropout, return_sequences=True,
                use_batch_norm=t.norm == "batch", use_layer_norm=t.norm == "layer", name="tcn")(x)
    elif kind == "mlp":
        x = mlp_body(x, cfg)
    elif kind == "transformer":
        x = transformer_body(x, PaddingMask(name="valid_frames")(inputs), cfg)
    # linear: the output layer on the (standardised) embeddings is the whole model
    l2 = cfg.linear.l2 if kind == "linear" else 0.0
    outputs = keras.layers.Dense(n_outputs, activation="sigmoid", name="probabilities",
                                 kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None)(x)
    model = keras.Model(inputs, outputs, name=kind)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss=MaskedWeightedBCE(pos_weight=list(np.asarray(pos_weight, float))))
    return model


def save_model(model: keras.Model, path: Path) -> None:
    """Save as ``.keras`` (atomic: written beside, then renamed)."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_model(path: Path, compile: bool = False) -> keras.Model:
    """Load a saved model with Keras's safe mode on (no arbitrary code from the file).

    Raises
    ------
    RunError
        The file is missing or not a model this project saved (damaged, truncated).
    """
    if not Path(path).is_file():
        raise RunError(f"{path}: model file missing; re-run `mouse-pipeline train` for this run")
    try:
        return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS, compile=compile, safe_mode=True)
    except (OSError, ValueError, TypeError, KeyError, zipfile.BadZipFile) as err:
        raise RunError(f"{path}: not a readable model ({first_line(err)}); re-run "
                       "`mouse-pipeline train` for this run") from None
