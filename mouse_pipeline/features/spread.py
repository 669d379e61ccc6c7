"""How much a video's embeddings vary across frames, and when that is too little to learn from.

Random weights make some networks (MobileNetV3, EfficientNet) give nearly the same
embedding for every frame; extraction measures the spread of each backbone's first new
cache file and refuses to go on from a nearly constant one. NumPy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NEARLY_CONSTANT = 1e-6  # embedding spread below which nothing can be learned


def embedding_spread(emb: Any, chunk: int = 1024) -> float:
    """How much embeddings vary across frames.

    Parameters
    ----------
    emb
        ``(n_frames, dim)`` embeddings: an array, or anything that slices like one (a cache
        file read as needed); read ``chunk`` frames at a time, so a long video's embeddings
        are never all in memory.

    Returns
    -------
    float
        Mean over dimensions of the standard deviation across frames; 0 for constant
        embeddings, NaN for fewer than two frames.
    """
    shape = np.shape(emb) if isinstance(emb, (np.ndarray, list)) else emb.shape
    if len(shape) != 2 or shape[0] < 2:
        return float("nan")
    n = shape[0]
    if n <= chunk:  # one read: as numpy computes it
        return float(np.asarray(emb[0:n], dtype=np.float64).std(axis=0).mean())
    total = np.zeros(shape[1])
    for a in range(0, n, chunk):
        total += np.asarray(emb[a:a + chunk], dtype=np.float64).sum(axis=0)
    mean, squares = total / n, np.zeros(shape[1])
    for a in range(0, n, chunk):
        squares += ((np.asarray(emb[a:a + chunk], dtype=np.float64) - mean) ** 2).sum(axis=0)
    return float(np.sqrt(squares / n).mean())


def is_nearly_constant(spread: float) -> bool:
    """Whether a spread (:func:`embedding_spread`) is too small to learn anything from."""
    return bool(np.isfinite(spread) and spread < NEARLY_CONSTANT)
