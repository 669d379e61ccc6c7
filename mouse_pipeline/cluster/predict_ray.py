"""``predict --ray``: every new video's probabilities a Ray task; the driver only plans and writes.

:func:`probabilities_on_ray` is called by :func:`mouse_pipeline.predict.predict_videos`
once every video is checked and extracted (extraction on Ray too, in the same Ray
session). It submits one task per video, in the videos' order; a task runs the very
code of a local run (:func:`mouse_pipeline.predict.video_probabilities`: the final
model(s) applied to the video's cached embeddings, combined, post-processed with the
thresholds and bout parameters chosen on validation videos) in a worker that keeps the
loaded models between its videos. The driver takes the results back in the videos'
order and writes each video's files as a local run does, so a video whose task fails
(a damaged model file, a damaged cache file) stops the command before its own files
and with the summary files unwritten, as locally. The driver imports no TensorFlow.

A task whose worker dies is retried by Ray (``cluster.ray.max_retries``): a video's
prediction is a pure function of the models and its embeddings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..config import Config
from . import ray_runtime

ray = ray_runtime.require_ray()  # a one-line error without the cluster extra
log = logging.getLogger(__name__)

#: In a worker: the predictor's loaded models, by the identity of their files.
_LOADED: dict[tuple, Any] = {}


def _models_key(predictor: Any) -> tuple:
    """The model files of ``predictor`` with their sizes and times (a rewritten file is loaded again)."""
    files = [str(path) for final in predictor.members for _, path in final.heads]
    stats = [os.stat(f) for f in files if os.path.exists(f)]
    return tuple(files), tuple((s.st_size, s.st_mtime_ns) for s in stats)


@ray.remote
def _video_task(cfg: Config, predictor: Any, cache: str, video: Any) -> tuple[np.ndarray, np.ndarray]:
    """One video's probabilities and 0/1 labels, in a Ray worker (as a local predict makes them)."""
    ray_runtime.configure_worker(cfg.cluster.ray, deterministic=False)  # predict sets none locally
    from ..predict import load_heads, video_probabilities

    key = _models_key(predictor)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load_heads(predictor)
    return video_probabilities(predictor, _LOADED[key], cache, video)


def probabilities_on_ray(ray_mod: Any, cfg: Config, predictor: Any,
                         videos: list[Any]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each video's ``(probabilities, 0/1 labels)``, in the order of ``videos``; all submitted at once.

    ``ray_mod`` is the session's Ray (:func:`.ray_runtime.connect`); tasks not yet taken
    back when the caller stops (an error, Ctrl-C) are cancelled.
    """
    settings = cfg.cluster.ray
    opts = ray_runtime.worker_options(ray_mod, settings)
    cfg_ref, predictor_ref = ray_mod.put(cfg), ray_mod.put(predictor)
    refs = [_video_task.options(**opts).remote(cfg_ref, predictor_ref, str(cfg.extract.cache), v) for v in videos]
    if refs:
        log.info("predicting %d video(s) on Ray, %d at a time", len(refs),
                 ray_runtime.workers_at_once(ray_mod, settings))
    taken = 0
    try:
        for video, ref in zip(videos, refs, strict=True):
            result = ray_runtime.get(ray_mod, ref, f"predict {video.file.video_id}", settings)
            taken += 1
            yield result
    finally:
        for ref in refs[taken:]:
            ray_mod.cancel(ref, force=True)
