"""The cluster figures of ``mouse-pipeline bench``: extraction and training on a local Ray.

N is the number of GPUs Keras sees, or else this machine's CPUs. Measured, each in the
same process as the rest of the bench:

- extraction frames/s of the same ``2 N`` videos (links to the bench video) by a plain
  local run (one process, every core), and on a local Ray with 1 and with N workers; the
  ratios Ray N / Ray 1 (target: at least 0.8 N where there are several GPUs or many
  cores) and Ray N / local (the engine's cost on one small machine: within 10 %);
- training: the same 8 trial fits (a search of 4 trials on each of 2 folds of tiny
  synthetic videos) sequentially in this process, and on a local Ray with 1 and N workers.

Every rate is of a second, timed run after an untimed one (in the same Ray session for
Ray: a worker imports TensorFlow and builds its backbone once, as over a long run on a
cluster; the local extraction rate leaves out model building too). On a CPU, "1 worker"
reserves one CPU of Ray's but still uses TensorFlow's default threads (results stay
bit-identical), so Ray N / Ray 1 there says what running N videos or trials at once adds. Without Ray
installed the section says it was skipped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_TRAIN_SETS = {"train.epochs": 2, "train.validation": "videos", "train.models": "[tcn]", "train.window.length": 32, "train.window.stride": 16,
               "train.tcn.filters": 8, "train.tcn.dilations": "[1, 2]", "train.folds.scheme": "group_kfold",
               "train.folds.k": 2, "train.search.space": "{tcn.filters: [4, 8], tcn.kernel_size: [2, 3]}"}
TRAIN_FITS = 8  # 4 trials x 2 folds


def ray_available() -> str | None:
    """None when Ray imports; otherwise why not (what the bench prints as skipped)."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        from .cluster.ray_runtime import INSTALL_HINT

        return f"Ray is not installed ({exc}); {INSTALL_HINT}"
    return None


def cluster_figures(work: Path, video: Path, backbone: str, size: int, batch: int, n: int | None = None,
                    train_frames: int = 80, parts: tuple[str, ...] = ("extract", "train")) -> dict:
    """Every figure of the section (see the module notes), or ``{"skipped": why}``.

    ``parts``: ``extract`` and/or ``train`` (the tests time only what they need).
    """
    why = ray_available()
    if why is not None:
        return {"skipped": why}
    from .bench import accelerators

    gpus = len(accelerators()[1])
    n = n or gpus or os.cpu_count() or 1
    runners: dict[str, Callable[..., float]] = {}
    if "extract" in parts:
        runners["extract"], n_videos = _extract_runner(work / "extract", video, backbone, size, batch, n)
    if "train" in parts:
        runners["train"] = _train_runner(work / "train", train_frames)
    on_ray = ("cluster.ray.enabled=true",)
    local = {part: _second(fn) for part, fn in runners.items()}
    ray_1: dict[str, float] = {}
    ray_n: dict[str, float] = {}
    for k, out in ((1, ray_1), (n, ray_n)):
        with _session(k, gpus):
            out.update({part: _second(fn, *on_ray) for part, fn in runners.items()})
    res: dict[str, Any] = {"workers": n, "gpus": gpus}
    for part, unit, extra in (("extract", "frames_per_s", {"videos": 2 * n}),
                              ("train", "fits_per_min", {"fits": TRAIN_FITS})):
        if part not in runners:
            continue
        res[part] = {**extra, f"local_{unit}": local[part], f"ray_1_{unit}": ray_1[part],
                     f"ray_n_{unit}": ray_n[part], "ray_n_vs_ray_1": ray_n[part] / ray_1[part],
                     "ray_n_vs_local": ray_n[part] / local[part], "ray_1_vs_local": ray_1[part] / local[part]}
    return res


def _second(fn: Callable[..., float], *extra: str) -> float:
    """``fn(*extra)`` twice; the second run's figure (the first starts workers, builds models)."""
    fn(*extra)
    return fn(*extra)


@contextmanager
def _session(n: int, gpus: int) -> Iterator[None]:
    """A local Ray of ``n`` workers: ``n`` CPUs, or ``n`` GPUs (and every CPU) where there are GPUs."""
    import ray

    ray.init(num_cpus=max(n, os.cpu_count() or 1) if gpus else n, num_gpus=min(n, gpus) if gpus else None,
             include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             object_store_memory=256 * 2**20)
    try:
        yield
    finally:
        ray.shutdown()


def _extract_runner(work: Path, video: Path, backbone: str, size: int, batch: int,
                    n: int) -> tuple[Callable[..., float], int]:
    """A function extracting ``2 n`` links to ``video`` again (overwrite): streaming frames/s."""
    from .config import load_config
    from .features.extract import extract

    videos = work / "videos"
    videos.mkdir(parents=True)
    for i in range(2 * n):
        (videos / f"{video.stem}_{i}{video.suffix}").symlink_to(Path(video).resolve())
    base = [f"data.videos={videos}", f"extract.cache={work / 'cache'}", f"extract.backbones=[{backbone}]",
            "extract.weights=random", f"extract.input_size={size}", f"extract.batch_size={batch}",
            "data.crop.mode=none"]

    def rate(*extra: str) -> float:
        summary = extract(load_config(None, [*base, *extra]), overwrite=True, progress=False)
        return summary.frames_extracted / summary.stream_seconds

    return rate, 2 * n


def _train_runner(work: Path, frames: int) -> Callable[..., float]:
    """A function training the 8 trial fits into a new run folder: fits per minute."""
    from .config import load_config
    from .features.extract import extract
    from .sequences.training import train
    from .synthetic import generate_dataset

    generate_dataset(work / "data", n_videos=4, n_frames=frames, size=32, fps=5, seed=11)
    base = [f"data.videos={work / 'data' / 'videos'}", f"data.labels={work / 'data' / 'labels'}",
            "data.crop.mode=none", f"extract.cache={work / 'cache'}", "extract.backbones=[mobilenet_v3_small]",
            "extract.weights=random", "extract.input_size=32", *[f"{k}={v}" for k, v in _TRAIN_SETS.items()]]
    extract(load_config(None, base), progress=False)
    runs = iter(range(1_000_000))

    def fits_per_minute(*extra: str) -> float:
        t0 = time.perf_counter()
        train(load_config(None, [*base, f"train.run={work / f'run_{next(runs)}'}", *extra]), progress=False)
        return TRAIN_FITS * 60 / (time.perf_counter() - t0)

    return fits_per_minute


def format_cluster(res: dict, row: Callable[..., str]) -> list[str]:
    """The cluster lines of the bench table (``row(name, value, target)``)."""
    c = res.get("cluster")
    if c is None:
        return []
    if "skipped" in c:
        return ["", f"cluster (Ray): skipped: {c['skipped']}"]
    n = c["workers"]
    scale = f"target >= {0.8 * n:.1f} (0.8 x N) with several GPUs or many cores"
    lines = ["", f"cluster: a local Ray, N = {n} workers ({'GPUs' if c['gpus'] else 'CPUs'})"]
    if "extract" in c:
        e = c["extract"]
        lines += [row(f"extract {e['videos']} videos, plain local run (frames/s)", e["local_frames_per_s"]),
                  row("extract on Ray, 1 worker (frames/s)", e["ray_1_frames_per_s"]),
                  row(f"extract on Ray, {n} workers (frames/s)", e["ray_n_frames_per_s"]),
                  row(f"  Ray {n} / Ray 1", e["ray_n_vs_ray_1"], scale),
                  row(f"  Ray {n} / local", e["ray_n_vs_local"], "target >= 0.9 on a 2-core machine")]
    if "train" in c:
        t = c["train"]
        lines += [row(f"train {t['fits']} trial fits, sequential (fits/min)", t["local_fits_per_min"]),
                  row("train on Ray, 1 worker (fits/min)", t["ray_1_fits_per_min"]),
                  row(f"train on Ray, {n} workers (fits/min)", t["ray_n_fits_per_min"]),
                  row(f"  Ray {n} / Ray 1", t["ray_n_vs_ray_1"], scale),
                  row(f"  Ray {n} / sequential", t["ray_n_vs_local"], "target >= 0.9 on a 2-core machine")]
    return lines
