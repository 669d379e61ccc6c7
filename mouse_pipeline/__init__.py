"""mouse-pipeline: per-frame behaviour labels from top-view mouse video.

Stage 1 (``features``) runs a frozen CNN backbone over every frame and caches the
embeddings in HDF5; stage 2 (``sequences``) trains sequence heads (LSTM, TCN, Transformer,
per-frame baselines) on the cache.
Only ``backbones``, ``features.extract`` and ``sequences`` import TensorFlow.
"""

__version__ = "0.1.0"
