"""``mouse-pipeline bench``: where extraction and training time goes, measured in one run.

Every figure is measured in the same process (memory and start-up: in child processes)
on the same machine, so ratios compare like with like:

- start-up: wall time of commands that need no model (``--help``, ``cache ls --config``,
  a re-extract with every file fresh, a config error), each a new ``python -m
  stages.cli`` process, against bare ``python -c pass`` (target: at most 1.5 s more);
- decode-only frames/s: read, crop, resize, no model;
- model-only frames/s: the backbone alone, on the path extraction feeds it (uint8
  batches of the extract batch size, each its own array, through
  :meth:`~mouse_pipeline.backbones.Backbone.embed` after the same warm-up), in steady
  state, the fastest pass (:func:`model_fps`) of runs just before and after the timed
  extract: an upper bound of extraction;
- full extract frames/s: decode + model + HDF5 write through :func:`extract` (the
  video's streaming rate, and end to end with probing and model building), and the
  streaming rate's ratio to model-only (1.0 = decoding fully hidden behind the model);
- the per-frame baseline: ``model.predict`` on one frame at a time (as the thesis code
  did), and the ratio of full extract to it;
- bfloat16 mixed precision: model-only frames/s and per-frame cosine similarity to float32;
- pose features (:mod:`.bench_pose`): the ``pose`` stream's frames/s on a pose file of
  18,000 frames (read, compute, write), and of the computation alone;
- peak resident memory of ``extract`` on a short video and on one ten times longer;
- the motion stream (:mod:`.bench_motion`): extraction of RGB only, motion only and both
  together (one decoding) in frames/s, the time of both over RGB alone, decode with and
  without the motion images, and the peak memory of both on a short and a 10x longer video;
- stage 2 (:mod:`.bench_stage2`): training frames/s through the project's window loader
  vs. a bare Keras ``fit`` on the same windows held in memory, and through the loader
  reading every window from files; sequence-model inference frames/s; peak memory of
  ``predict`` and ``train`` on videos ten times longer;
- cluster (:mod:`.bench_cluster`): extraction and training trials on a local Ray with 1
  and N workers, against a plain local run (skipped, and said so, without Ray).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bench_cluster import cluster_figures, format_cluster
from .bench_motion import format_motion, motion_figures, motion_memory_figures
from .bench_pose import format_pose, pose_figures
from .bench_stage2 import format_stage2, memory_figures, stage2_figures
from .config import load_config
from .devices import cpu_has_bf16
from .fileio import write_json
from .startup import startup_figures

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BenchSettings:
    """What ``mouse-pipeline bench`` measures, and on what.

    Attributes
    ----------
    video
        Video to measure on (None: a synthetic 256x256 one of ``frames`` frames).
    backbone, input_size, batch
        Backbone name, input side (None: the backbone's default), extract batch size.
    per_frame
        Frames of the per-frame ``model.predict`` baseline.
    memory, stage2, startup, motion
        Whether to measure peak memory, stage 2 speed, start-up times, the motion stream.
    motion_repeats
        Timed runs of each motion-stream configuration (the fastest is kept).
    parallel_videos
        Also extract this many copies of the video decoding at once (1: not measured).
    frame_threads
        ``extract.frame_threads`` of every extraction.
    startup_repeats
        Timed runs of each start-up command (the median is reported).
    cluster
        Whether to measure extraction and training on a local Ray (:mod:`.bench_cluster`).
    """

    video: Path | None = None
    backbone: str = "resnet50v2"
    input_size: int | None = None
    batch: int = 32
    frames: int = 320
    per_frame: int = 48
    memory: bool = True
    stage2: bool = True
    startup: bool = True
    motion: bool = True
    motion_repeats: int = 2
    parallel_videos: int = 1
    frame_threads: int = 1
    startup_repeats: int = 5
    cluster: bool = True

def accelerators() -> tuple[str, list[str]]:
    """Keras's backend and the GPUs it sees (names as the backend reports them)."""
    import keras

    from .devices import gpus

    return keras.backend.backend(), list(gpus())


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def decode_fps(video: Path, batch: int, size: int, threads: int = 1) -> float:
    from .video import iter_batches

    t0, n = time.perf_counter(), 0
    for b in iter_batches(video, batch, None, size, threads=threads):
        n += len(b)
    return n / (time.perf_counter() - t0)


def model_fps(backbone: Any, frames: np.ndarray, batch: int, repeats: int = 2,
              min_seconds: float = 2.0) -> float:
    """Steady-state frames/s of the backbone alone, fed the way extraction feeds it.

    Parameters
    ----------
    backbone
        A built :class:`~mouse_pipeline.backbones.Backbone`.
    frames
        ``uint8`` RGB frames as decoded (``(N, S, S, 3)``, at least ``batch`` of them).
    batch
        Frames per batch: the extract batch size.
    repeats, min_seconds
        At least this many timed passes over the batches and this many seconds of timing
        (so that a fast GPU is not timed over a few milliseconds).

    Returns
    -------
    float
        Frames per second of the fastest pass.

    Notes
    -----
    The path is streaming extraction's: full ``uint8`` batches, each its own C-contiguous
    array (as :func:`~mouse_pipeline.video.iter_batches` preallocates them, not views into
    one large array), through :meth:`Backbone.embed` (the compiled forward pass), after
    :meth:`Backbone.warm_up` as extract does it and one more untimed pass over every batch
    (allocator and kernel caches). The fastest pass is reported, as ``timeit`` does: other
    processes can only slow a pass down, and on a shared machine they do, by tens of
    percent from one minute to the next, so the fastest pass is the best estimate of what
    the model alone can do (docs/BENCHMARKS.md).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"model_fps: frames must be uint8 as decoded, got {frames.dtype}")
    batches = [np.array(frames[i:i + batch]) for i in range(0, len(frames) - batch + 1, batch)]
    if not batches:
        raise ValueError(f"model_fps: need at least {batch} frames, got {len(frames)}")
    backbone.warm_up(batch)
    for b in batches:
        backbone.embed(b)
    passes: list[float] = []
    started = time.perf_counter()
    while len(passes) < repeats or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        for b in batches:
            backbone.embed(b)
        passes.append(time.perf_counter() - t0)
    return len(batches) * batch / min(passes)


def per_frame_fps(backbone, frames: np.ndarray, n: int) -> float:
    model = backbone.model
    model.predict(frames[:1].astype(np.float32), verbose=0)
    t0 = time.perf_counter()
    for i in range(n):
        model.predict(frames[i:i + 1].astype(np.float32), verbose=0)
    return n / (time.perf_counter() - t0)


_RSS_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def peak_rss_mb(args: list[str]) -> float:
    """Peak resident memory (MB) of a child process running ``mouse-pipeline`` with args.

    The child is started by a small wrapper process: Linux carries a forked process's
    pre-exec peak into ``ru_maxrss``, so forking straight from this (large) process would
    report this process's memory instead of the child's.
    """
    proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, sys.executable, "-m", "stages.cli", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child extract failed: {proc.stderr[-800:]}")
    return int(proc.stdout.strip().splitlines()[-1]) / 1024.0


def run_bench(settings: BenchSettings, out: Path | None = None) -> dict:
    """Measure every figure (see the module docstring) and return them as a dict.

    Synthetic videos, caches and the memory and start-up runs' files go to a temporary
    folder that is deleted at the end, whether the run succeeds or not. With ``out``,
    the figures are also written there as JSON.
    """
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        res = _measure(Path(tmp), settings)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, res)
    return res


def _measure(work: Path, s: BenchSettings) -> dict:
    from .backbones import build_backbone, get_spec
    from .video import probe_video

    label = "synthetic, seed 0" if s.video is None else str(s.video)
    video = s.video if s.video is not None else _synthetic_video(work, s.frames)
    info = probe_video(video)
    size = int(s.input_size or get_spec(s.backbone).default_size)
    res: dict = {"machine": _machine(),
                 "settings": {"backbone": s.backbone, "input_size": size, "batch_size": s.batch,
                              "video": label, "video_frames": info.n_frames,
                              "video_size": f"{info.width}x{info.height}", "frame_threads": s.frame_threads}}
    if s.startup:  # first, while this process has not grown yet
        res["startup"] = startup_figures(work, s.startup_repeats)
    bb = build_backbone(s.backbone, "random", size)
    frames = _frames_in_memory(video, s.batch, size, max(s.batch * 4, min(info.n_frames, 256)))
    res.update(_extract_figures(work, s, video, size, bb, frames))
    res.update(_precision_figures(res, s, size, bb, frames))
    if s.motion:
        res.update(motion_figures(work, lambda cache, streams: _extract_config(
            s, size, video, cache, f"extract.backbones={streams}"), video, s.backbone, s.batch, size,
            s.frame_threads, s.motion_repeats))
    res.update(pose_figures(work))
    if s.memory:
        res.update(_memory_figures(work))
        if s.motion:
            res.update(motion_memory_figures(work, peak_rss_mb))
    if s.stage2:
        res["stage2"] = stage2_figures(dim=bb.dim, work=work / "stage2")
        if s.memory:
            res.update(memory_figures(work / "stage2_memory", peak_rss_mb))
    if s.cluster:
        res["cluster"] = cluster_figures(work / "cluster", video, s.backbone, size, s.batch)
    return res


def _machine() -> dict:
    backend, gpus = accelerators()
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "bf16_cpu": cpu_has_bf16(), "keras_backend": backend, "gpus": gpus,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def _synthetic_video(work: Path, frames: int) -> Path:
    from .synthetic import generate_dataset

    generate_dataset(work / "synth", n_videos=1, n_frames=frames, size=256, fps=10, seed=0, prefix="bench")
    return work / "synth" / "videos" / "bench_000.mp4"


def _frames_in_memory(video: Path, batch: int, size: int, n: int) -> np.ndarray:
    """The first ``n`` frames of a video as extract decodes them (uint8, whole frames)."""
    from .video import iter_batches

    got: list[np.ndarray] = []
    with contextlib.closing(iter_batches(video, batch, None, size)) as batches:
        for b in batches:
            got.append(b)
            if sum(map(len, got)) >= n:
                break
    return np.concatenate(got)[:n]


def _extract_config(s: BenchSettings, size: int, videos: Path, cache: Path, *extra: str) -> Any:
    return load_config(None, [f"data.videos={videos}", f"extract.cache={cache}",
                              f"extract.backbones=[{s.backbone}]", "extract.weights=random",
                              f"extract.input_size={size}", f"extract.batch_size={s.batch}",
                              f"extract.frame_threads={s.frame_threads}", *extra])


def _extract_figures(work: Path, s: BenchSettings, video: Path, size: int, bb: Any,
                     frames: np.ndarray) -> dict:
    """Decode only, model only, full extract (streaming, end to end, parallel), per frame."""
    from .features.extract import extract
    from .features.spread import embedding_spread
    from .features.store import cache_path, read_embeddings

    res: dict = {"decode_frames_per_s": decode_fps(video, s.batch, size, s.frame_threads)}
    cfg = _extract_config(s, size, video, work / "cache")
    extract(cfg, progress=False)  # warm-up pass (graph tracing, file cache)
    # model only just before and just after the timed extract, in the same steady state;
    # the faster of the two (other processes only ever slow a measurement down)
    before = model_fps(bb, frames, s.batch)
    t_full, summary = _timed(extract, cfg, overwrite=True, progress=False)
    res["model_frames_per_s"] = max(before, model_fps(bb, frames, s.batch))
    # streaming throughput (decode + model + HDF5 write) of the video itself, and the
    # end-to-end figure that also counts probing the video and building the backbone
    res["extract_frames_per_s"] = summary.results[0].frames_per_s
    res["extract_end_to_end_frames_per_s"] = summary.results[0].frames / t_full
    res["extract_vs_model"] = res["extract_frames_per_s"] / res["model_frames_per_s"]
    if s.parallel_videos > 1:  # several decoders feeding one model (what a GPU needs)
        res.update(_parallel_figures(work, s, video, size))
        res["extract_parallel_vs_model"] = res["extract_parallel_frames_per_s"] / res["model_frames_per_s"]
    res["per_frame_predict_frames_per_s"] = per_frame_fps(bb, frames, s.per_frame)
    res["extract_vs_per_frame"] = res["extract_frames_per_s"] / res["per_frame_predict_frames_per_s"]
    res["embedding_spread"] = embedding_spread(read_embeddings(cache_path(work / "cache", s.backbone,
                                                                          video.stem)))
    return res


def _parallel_figures(work: Path, s: BenchSettings, video: Path, size: int) -> dict:
    """Extract of ``parallel_videos`` copies of the video (links), decoding at once."""
    from .features.extract import extract

    many = work / "many"
    many.mkdir()
    for i in range(s.parallel_videos):
        (many / f"{video.stem}_{i}{video.suffix}").symlink_to(video.resolve())
    cfg = _extract_config(s, size, many, work / "cache_many", f"extract.decode_workers={s.parallel_videos}")
    summary = extract(cfg, progress=False)
    return {"parallel_videos": s.parallel_videos,
            "extract_parallel_frames_per_s": summary.frames_extracted / summary.stream_seconds}


def _precision_figures(res: dict, s: BenchSettings, size: int, bb: Any, frames: np.ndarray) -> dict:
    """bfloat16 (on bf16 CPUs and GPUs) and float16 (GPUs) against float32."""
    from .backbones import build_backbone

    out: dict = {}
    gpus = res["machine"]["gpus"]
    if res["machine"]["bf16_cpu"] or gpus:
        bf = build_backbone(s.backbone, "random", size, precision="bfloat16")
        out["model_bf16_frames_per_s"] = model_fps(bf, frames, s.batch)
        out["bf16_vs_float32"] = out["model_bf16_frames_per_s"] / res["model_frames_per_s"]
        a = bb.embed(frames[:s.batch]).astype(np.float64)
        b = bf.embed(frames[:s.batch]).astype(np.float64)
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        out["bf16_cosine_min"] = float(cos.min())
    if gpus:  # float16 mixed precision is the GPU's usual fast path
        f16 = build_backbone(s.backbone, "random", size, precision="float16")
        out["model_fp16_frames_per_s"] = model_fps(f16, frames, s.batch)
        out["fp16_vs_float32"] = out["model_fp16_frames_per_s"] / res["model_frames_per_s"]
    return out


def _memory_figures(work: Path) -> dict:
    """Peak RSS of ``extract`` (mobilenet_v3_small, 96 px) on a short and a 10x longer video."""
    from .synthetic import generate_dataset

    short, long_ = 300, 3000
    rss = {}
    for name, n in (("short", short), ("long", long_)):
        data = work / f"mem_{name}"
        generate_dataset(data, 1, n, 128, 10, seed=1, prefix=name)
        rss[name] = peak_rss_mb(["extract", "--quiet", "--set", f"data.videos={data / 'videos'}",
                                 "--set", f"extract.cache={work / ('mem_cache_' + name)}",
                                 "--set", "extract.backbones=[mobilenet_v3_small]",
                                 "--set", "extract.weights=random", "--set", "extract.input_size=96"])
    return {"peak_rss_mb_short": rss["short"], "peak_rss_mb_long": rss["long"],
            "peak_rss_growth_mb": rss["long"] - rss["short"], "memory_frames": {"short": short, "long": long_}}


def format_bench(res: dict) -> str:
    """The bench figures as a table with targets."""
    def row(name, value, target=""):
        v = "–" if value is None else (f"{value:,.2f}" if isinstance(value, float) else str(value))
        return f"{name:<48} {v:>12}  {target}"

    s = res["settings"]
    lines = [f"backbone {s['backbone']} at {s['input_size']} px, batch {s['batch_size']}, "
             f"frame threads {s.get('frame_threads', 1)}, "
             f"video {s['video']} ({s['video_frames']} frames, {s['video_size']})",
             f"machine: {res['machine']['platform']}, {res['machine']['cpus']} CPUs, "
             f"GPUs: {res['machine']['gpus'] or 'none'}, bf16 CPU: {res['machine']['bf16_cpu']}, "
             f"Keras backend: {res['machine'].get('keras_backend', 'tensorflow')}, "
             f"load average at start: {res['machine'].get('load_average', '?')}", ""]
    if "startup" in res:
        lines += _startup_rows(res["startup"], row)
    lines += [row("decode only (frames/s)", res["decode_frames_per_s"]),
              row("model only (frames/s)", res["model_frames_per_s"]),
              row("full extract, streaming (frames/s)", res["extract_frames_per_s"]),
              row("full extract, incl. probe + model build (frames/s)", res["extract_end_to_end_frames_per_s"]),
              row("  full extract / model only", res["extract_vs_model"], "target >= 0.95")]
    if "extract_parallel_frames_per_s" in res:
        k = res["parallel_videos"]
        lines += [row(f"full extract, {k} videos decoding at once (frames/s)", res["extract_parallel_frames_per_s"]),
                  row("  that / model only", res["extract_parallel_vs_model"])]
    lines += [row("per-frame model.predict (frames/s)", res["per_frame_predict_frames_per_s"]),
              row("  full extract / per-frame", res["extract_vs_per_frame"], "target >= 2.5")]
    if "model_bf16_frames_per_s" in res:
        lines += [row("model only, bfloat16 (frames/s)", res["model_bf16_frames_per_s"]),
                  row("  bfloat16 / float32", res["bf16_vs_float32"], "target >= 1.4 (bf16 CPUs)"),
                  row("  min cosine similarity bf16 vs fp32", res["bf16_cosine_min"], "target >= 0.99")]
    if "model_fp16_frames_per_s" in res:
        lines += [row("model only, float16 (frames/s)", res["model_fp16_frames_per_s"]),
                  row("  float16 / float32", res["fp16_vs_float32"])]
    if "peak_rss_mb_short" in res:
        m = res["memory_frames"]
        lines += [row(f"peak RSS extract, {m['short']} frames (MB)", res["peak_rss_mb_short"]),
                  row(f"peak RSS extract, {m['long']} frames (MB)", res["peak_rss_mb_long"]),
                  row("  growth (MB)", res["peak_rss_growth_mb"], "target <= 150")]
    lines += format_motion(res, row)
    lines += format_pose(res, row)
    lines += format_stage2(res, row)
    lines += format_cluster(res, row)
    return "\n".join(lines)


def _startup_rows(startup: dict, row: Any) -> list[str]:
    """The start-up section of :func:`format_bench`: seconds, and the difference to bare Python."""
    target = startup["target_over_bare_s"]
    lines = [f"start-up, median of {startup['repeats']} runs (s) and over bare Python"]
    for name, seconds in startup["seconds"].items():
        over = startup["over_bare_s"][name]
        verdict = "" if name == "python -c pass" else (
            f"+{over:.2f} s, target <= {target} s over bare Python: {'met' if over <= target else 'NOT met'}")
        lines.append(row(f"  {name}", seconds, verdict))
    return lines + [""]
