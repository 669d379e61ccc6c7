"""``mouse-pipeline bench``: what the motion stream costs beside the RGB one.

Measured through :func:`~mouse_pipeline.features.extract.extract` on the bench's video,
in one process (the bench has already traced the backbone once), each configuration
extracted with ``overwrite`` (streaming time only: the backbone's build and warm-up
before each run are not counted):

- RGB only (stream ``<backbone>``), motion only (``<backbone>+motion``) and both
  together (one decoding feeding both streams), each as frames of the video per second
  of streaming (decode + motion images + model + HDF5 write; no probing or building);
- ``both_vs_rgb``: the time of both together over RGB alone (target: at most 2.2; the
  backbone runs twice, the decoding is shared), from wall time (the fastest run of each),
  and ``both_vs_rgb_cpu`` from the process's CPU time over the same streaming (every
  thread; the median run of each): on a shared machine the wall-time ratio moves with the
  other processes' load from one run to the next, the CPU time much less;
- to tell where the extra time goes: decode + motion images without a model, beside
  decode alone, in frames/s;
- (with the memory figures) peak resident memory of ``extract`` with both streams on a
  short video and on one ten times longer (:func:`motion_memory_figures`).

Each timed configuration runs ``repeats`` times, interleaved (RGB, motion, both, RGB,
...), and the fastest run of each is kept: other processes can only slow a run down, and
interleaving spreads a slow minute over all three.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .features.motion import MotionSettings, motion_image, motion_stream

CONFIGS = ("rgb", "motion", "both")
TARGET_BOTH_VS_RGB = 2.2


def _streams(backbone: str, which: str) -> str:
    names = {"rgb": [backbone], "motion": [motion_stream(backbone)],
             "both": [backbone, motion_stream(backbone)]}[which]
    return "[" + ", ".join(names) + "]"


def decode_motion_fps(video: Path, batch: int, size: int, settings: MotionSettings, threads: int = 1) -> float:
    """Frames/s of decoding with the motion images made (RGB batches too), no model."""
    from .video import iter_motion_batches

    def make(prev: Any, cur: Any, dst: Any) -> None:
        motion_image(prev, cur, settings, dst)

    t0, n = time.perf_counter(), 0
    for _, moving in iter_motion_batches(video, batch, None, size, make, rgb=True, threads=threads):
        n += len(moving)
    return n / (time.perf_counter() - t0)


def motion_figures(work: Path, make_config: Any, video: Path, backbone: str, batch: int, size: int,
                   threads: int = 1, repeats: int = 2) -> dict:
    """The motion stream's extraction figures (see the module notes).

    Parameters
    ----------
    work
        Folder for the caches.
    make_config
        ``make_config(cache, streams)`` -> the extract config of the bench's video with
        ``extract.backbones`` set to ``streams`` (YAML list text).
    video, backbone, batch, size, threads
        The bench's video, backbone, batch size, input side and frame threads.
    repeats
        Timed runs of each configuration (the fastest is kept).

    Returns
    -------
    dict
        ``motion``: ``{method, rgb_frames_per_s, motion_frames_per_s, both_frames_per_s,
        both_vs_rgb, cpu_ms_per_frame, both_vs_rgb_cpu, target_both_vs_rgb, decode_frames_per_s,
        decode_motion_frames_per_s, runs}``; ``runs`` holds every timed run's frames/s per
        configuration, ``cpu_ms_per_frame`` the median CPU milliseconds per frame of each.
    """
    from .features.extract import extract
    from .video import iter_batches

    configs = {which: make_config(work / f"cache_motion_{which}", _streams(backbone, which)) for which in CONFIGS}
    settings = MotionSettings.from_config(configs["both"].extract.motion)
    runs: dict[str, list[float]] = {which: [] for which in CONFIGS}
    cpu: dict[str, list[float]] = {which: [] for which in CONFIGS}  # CPU seconds per frame
    for _ in range(max(1, repeats)):
        for which, cfg in configs.items():
            summary = extract(cfg, overwrite=True, progress=False)
            runs[which].append(summary.results[0].frames / summary.stream_seconds)
            cpu[which].append(summary.stream_cpu_seconds / summary.results[0].frames)
    best = {which: max(rates) for which, rates in runs.items()}
    cpu_ms = {which: 1000 * float(np.median(values)) for which, values in cpu.items()}
    t0, n = time.perf_counter(), 0
    for b in iter_batches(video, batch, None, size, threads=threads):
        n += len(b)
    decode = n / (time.perf_counter() - t0)
    return {"motion": {
        "method": settings.provenance(), "rgb_frames_per_s": best["rgb"], "motion_frames_per_s": best["motion"],
        "both_frames_per_s": best["both"], "both_vs_rgb": best["rgb"] / best["both"],
        "cpu_ms_per_frame": cpu_ms, "both_vs_rgb_cpu": cpu_ms["both"] / cpu_ms["rgb"],
        "target_both_vs_rgb": TARGET_BOTH_VS_RGB, "decode_frames_per_s": decode,
        "decode_motion_frames_per_s": decode_motion_fps(video, batch, size, settings, threads),
        "runs": runs}}


def motion_memory_figures(work: Path, peak_rss: Any, frames: tuple[int, int] = (300, 3000),
                          backbone: tuple[str, int] = ("mobilenet_v3_small", 96)) -> dict:
    """Peak RSS (MB) of ``extract`` with RGB and motion streams on a short and a longer video.

    ``peak_rss(args)`` runs ``mouse-pipeline <args>`` in a child and returns its peak
    (:func:`mouse_pipeline.bench.peak_rss_mb`).
    """
    from .synthetic import generate_dataset

    name, size = backbone
    rss = {}
    for label, n in zip(("short", "long"), frames, strict=True):
        data = work / f"motion_mem_{label}"
        generate_dataset(data, 1, n, 128, 10, seed=1, prefix=label)
        rss[label] = peak_rss(["extract", "--quiet", "--set", f"data.videos={data / 'videos'}",
                               "--set", f"extract.cache={work / ('motion_mem_cache_' + label)}",
                               "--set", f"extract.backbones={_streams(name, 'both')}",
                               "--set", "extract.weights=random", "--set", f"extract.input_size={size}"])
    return {"peak_rss_mb_motion_short": rss["short"], "peak_rss_mb_motion_long": rss["long"],
            "peak_rss_growth_mb_motion": rss["long"] - rss["short"],
            "memory_motion_frames": {"short": frames[0], "long": frames[1]}}


def format_motion(res: dict, row: Any) -> list[str]:
    """The motion rows of :func:`mouse_pipeline.bench.format_bench`."""
    lines: list[str] = []
    m = res.get("motion")
    if m is not None:
        method = ", ".join(f"{k} {v}" for k, v in sorted(m["method"].items()) if k != "params")
        target = m["target_both_vs_rgb"]

        def verdict(ratio: float) -> str:
            return f"target <= {target}: {'met' if ratio <= target else 'NOT met'}"

        lines += ["", f"motion stream ({method}), fastest of {len(m['runs']['rgb'])} interleaved runs",
                  row("  extract RGB only, streaming (frames/s)", m["rgb_frames_per_s"]),
                  row("  extract motion only, streaming (frames/s)", m["motion_frames_per_s"]),
                  row("  extract RGB + motion, one decoding (frames/s)", m["both_frames_per_s"]),
                  row("  time of RGB + motion / RGB only", m["both_vs_rgb"], verdict(m["both_vs_rgb"])),
                  row("  CPU time of RGB + motion / RGB only", m["both_vs_rgb_cpu"], verdict(m["both_vs_rgb_cpu"])),
                  row("  CPU ms per frame: RGB, motion, both",
                      " / ".join(f"{m['cpu_ms_per_frame'][k]:.1f}" for k in CONFIGS)),
                  row("  decode only (frames/s)", m["decode_frames_per_s"]),
                  row("  decode + motion images, no model (frames/s)", m["decode_motion_frames_per_s"])]
    if "peak_rss_mb_motion_short" in res:
        f = res["memory_motion_frames"]
        lines += [row(f"peak RSS extract RGB + motion, {f['short']} frames (MB)", res["peak_rss_mb_motion_short"]),
                  row(f"peak RSS extract RGB + motion, {f['long']} frames (MB)", res["peak_rss_mb_motion_long"]),
                  row("  growth (MB)", res["peak_rss_growth_mb_motion"], "target <= 150")]
    return lines
