"""The optional per-stream projection of a fused input set (``train.fusion.projection``).

A fused input set's frames are its streams' columns side by side (:mod:`mouse_pipeline.streams`).
With ``train.fusion.projection: W`` each stream's (standardised) columns go through a Dense
layer of their own to ``W`` units, weights shared over frames, and the projections are
concatenated: a 2048-wide CNN stream and a 60-wide pose stream then enter the head with
the same width. The stream boundaries are given by the widths of the set's streams.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


@keras.saving.register_keras_serializable(package="mouse_pipeline")
class StreamColumns(keras.layers.Layer):
    """``(B, T, D) -> (B, T, stop - start)``: one stream's columns of a fused frame."""

    def __init__(self, start: int, stop: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start:self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self) -> dict:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def project_streams(x, stream_dims: Sequence[int], width: int):
    """Each stream's columns of ``x`` projected to ``width`` units (a Dense each, linear), side by side."""
    outs, start = [], 0
    for i, dim in enumerate(stream_dims):
        part = StreamColumns(start, start + int(dim), name=f"stream_{i}")(x)
        outs.append(keras.layers.Dense(width, name=f"stream_{i}_projection")(part))
        start += int(dim)
    return outs[0] if len(outs) == 1 else keras.layers.Concatenate(axis=-1, name="fused")(outs)
