"""``mouse-pipeline bench``: where extraction and training time goes, measured in one run.

Every figure is measured in the same process (memory: in child processes) on the same
machine, so ratios compare like with like:

- decode-only frames/s: read, crop, resize, no model;
- model-only frames/s: the backbone on batches already in memory (steady state);
- full extract frames/s: decode + model + HDF5 write through :func:`extract` (the
  video's streaming rate, and end to end with probing and model building), and the
  streaming rate's ratio to model-only (1.0 = decoding fully hidden behind the model);
- the per-frame baseline: ``model.predict`` on one frame at a time (as the thesis code
  did), and the ratio of full extract to it;
- bfloat16 mixed precision: model-only frames/s and per-frame cosine similarity to float32;
- peak resident memory of ``extract`` on a short video and on one ten times longer;
- stage 2: training frames/s through the project's window loader vs. a bare Keras ``fit``
  on the same windows held in memory, and sequence-model inference frames/s.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .config import load_config

log = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    """Whether the CPU advertises bfloat16 instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def model_fps(backbone, frames: np.ndarray, batch: int, repeats: int = 1, min_seconds: float = 2.0) -> float:
    """Steady-state frames/s of the backbone on batches in host memory (as extract feeds it).

    At least ``repeats`` passes over the batches and at least ``min_seconds`` of timing,
    so that a fast GPU is not timed over a few milliseconds.
    """
    batches = [frames[i:i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    for b in batches[:2]:
        backbone.embed(b)  # warm-up: tracing, allocations
    t0, n, passes = time.perf_counter(), 0, 0
    while passes < repeats or time.perf_counter() - t0 < min_seconds:
        for b in batches:
            backbone.embed(b)
            n += len(b)
        passes += 1
    return n / (time.perf_counter() - t0)


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


def stage2_figures(dim: int, frames_per_video: int = 3000, videos: int = 4, epochs: int = 2) -> dict:
    """Training frames/s through the window loader vs. in-memory fit; inference frames/s."""
    import keras

    from .config import TrainConfig
    from .sequences.models import build_model
    from .sequences.training import WindowSequence, predict_video
    from .sequences.windows import make_windows

    rng = np.random.default_rng(0)
    cfg = TrainConfig()
    length, stride, bs = cfg.window.length, cfg.window.stride, cfg.batch_size
    xs = [rng.normal(size=(frames_per_video, dim)).astype(np.float32) for _ in range(videos)]
    ys = [(rng.random((frames_per_video, 3)) < 0.1).astype(np.float32) for _ in range(videos)]
    seq = WindowSequence(xs, ys, length, stride, bs, seed=0)
    xw = np.concatenate([make_windows(x, y, length, stride)[0] for x, y in zip(xs, ys, strict=True)])
    yw = np.concatenate([make_windows(x, y, length, stride)[1] for x, y in zip(xs, ys, strict=True)])
    xw, yw = np.ascontiguousarray(xw), np.ascontiguousarray(yw)
    out = {}
    for kind in ("lstm", "tcn"):
        def fresh(kind=kind):
            keras.utils.set_random_seed(0)
            return build_model(kind, cfg, dim, 3, np.zeros(dim), np.ones(dim), np.ones(3))
        m = fresh()
        m.fit(seq, epochs=1, verbose=0)  # warm-up (graph building)
        t_loader, _ = _timed(m.fit, seq, epochs=epochs, verbose=0, shuffle=False)
        m = fresh()
        m.fit(xw, yw, batch_size=bs, epochs=1, verbose=0)
        t_mem, _ = _timed(m.fit, xw, yw, batch_size=bs, epochs=epochs, verbose=0)
        frames = len(seq.pairs) * length * epochs
        t_inf, _ = _timed(predict_video, m, xs[0], length, max(1, length // 4))
        out[kind] = {"train_loader_frames_per_s": frames / t_loader,
                     "train_in_memory_frames_per_s": len(xw) * length * epochs / t_mem,
                     "loader_vs_in_memory": (frames / t_loader) / (len(xw) * length * epochs / t_mem),
                     "inference_frames_per_s": frames_per_video / t_inf}
    return out


def run_bench(video: Path | None, backbone_name: str = "resnet50v2", input_size: int | None = None,
              batch: int = 32, frames: int = 320, per_frame: int = 48, out: Path | None = None,
              memory: bool = True, stage2: bool = True, parallel_videos: int = 1,
              frame_threads: int = 1) -> dict:
    """Measure every figure (see the module docstring) and return them as a dict.

    Synthetic videos, caches and the memory runs' files go to a temporary folder that is
    deleted at the end, whether the run succeeds or not.
    """
    with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
        return _run_bench(Path(tmp), video, backbone_name, input_size, batch, frames, per_frame, out,
                          memory, stage2, parallel_videos, frame_threads)


def _run_bench(work: Path, video: Path | None, backbone_name: str, input_size: int | None, batch: int,
               frames: int, per_frame: int, out: Path | None, memory: bool, stage2: bool,
               parallel_videos: int, frame_threads: int) -> dict:
    from .backbones import build_backbone, embedding_spread, get_spec
    from .features.extract import extract
    from .features.store import cache_path, read_embeddings
    from .synthetic import generate_dataset
    from .video import iter_batches, probe_video

    label = "synthetic, seed 0" if video is None else str(video)
    if video is None:
        generate_dataset(work / "synth", n_videos=1, n_frames=frames, size=256, fps=10, seed=0, prefix="bench")
        video = work / "synth" / "videos" / "bench_000.mp4"
    info = probe_video(video)
    size = int(input_size or get_spec(backbone_name).default_size)
    res: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "python": platform.python_version(), "bf16_cpu": cpu_has_bf16()},
                 "settings": {"backbone": backbone_name, "input_size": size, "batch_size": batch,
                              "video": label, "video_frames": info.n_frames,
                              "video_size": f"{info.width}x{info.height}"}}
    res["machine"]["keras_backend"], res["machine"]["gpus"] = accelerators()
    res["settings"]["frame_threads"] = frame_threads
    res["decode_frames_per_s"] = decode_fps(video, batch, size, frame_threads)
    mem_frames = np.concatenate(list(iter_batches(video, batch, None, size)))[: max(batch * 4, min(info.n_frames, 256))]
    bb = build_backbone(backbone_name, "random", size)
    res["model_frames_per_s"] = model_fps(bb, mem_frames, batch, repeats=2)
    def extract_config(videos: Path, cache: Path, *extra: str):
        return load_config(None, [f"data.videos={videos}", f"extract.cache={cache}",
                                  f"extract.backbones=[{backbone_name}]", "extract.weights=random",
                                  f"extract.input_size={size}", f"extract.batch_size={batch}",
                                  f"extract.frame_threads={frame_threads}", *extra])

    cfg = extract_config(video, work / "cache")
    extract(cfg, progress=False)  # warm-up pass (graph tracing, file cache)
    t_full, summary = _timed(extract, cfg, overwrite=True, progress=False)
    # streaming throughput (decode + model + HDF5 write) of the video itself, and the
    # end-to-end figure that also counts probing the video and building the backbone
    res["extract_frames_per_s"] = summary.results[0].frames_per_s
    res["extract_end_to_end_frames_per_s"] = info.n_frames / t_full
    res["extract_vs_model"] = res["extract_frames_per_s"] / res["model_frames_per_s"]
    if parallel_videos > 1:  # several decoders feeding one model (what a GPU needs)
        many = work / "many"
        many.mkdir()
        for i in range(parallel_videos):
            (many / f"{video.stem}_{i}{video.suffix}").symlink_to(video.resolve())
        pcfg = extract_config(many, work / "cache_many", f"extract.decode_workers={parallel_videos}")
        psum = extract(pcfg, progress=False)
        res["parallel_videos"] = parallel_videos
        res["extract_parallel_frames_per_s"] = psum.frames_extracted / psum.stream_seconds
        res["extract_parallel_vs_model"] = res["extract_parallel_frames_per_s"] / res["model_frames_per_s"]
    res["per_frame_predict_frames_per_s"] = per_frame_fps(bb, mem_frames, per_frame)
    res["extract_vs_per_frame"] = res["extract_frames_per_s"] / res["per_frame_predict_frames_per_s"]
    emb32 = read_embeddings(cache_path(work / "cache", backbone_name, video.stem))
    res["embedding_spread"] = embedding_spread(emb32)
    if res["machine"]["bf16_cpu"] or res["machine"]["gpus"]:
        bf = build_backbone(backbone_name, "random", size, precision="bfloat16")
        res["model_bf16_frames_per_s"] = model_fps(bf, mem_frames, batch, repeats=2)
        res["bf16_vs_float32"] = res["model_bf16_frames_per_s"] / res["model_frames_per_s"]
        a = bb.embed(mem_frames[:batch]).astype(np.float64)
        b = bf.embed(mem_frames[:batch]).astype(np.float64)
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        res["bf16_cosine_min"] = float(cos.min())
    if res["machine"]["gpus"]:  # float16 mixed precision is the GPU's usual fast path
        f16 = build_backbone(backbone_name, "random", size, precision="float16")
        res["model_fp16_frames_per_s"] = model_fps(f16, mem_frames, batch, repeats=2)
        res["fp16_vs_float32"] = res["model_fp16_frames_per_s"] / res["model_frames_per_s"]
    if memory:
        short, long_ = 300, 3000
        generate_dataset(work / "mem_short", 1, short, 128, 10, seed=1, prefix="short")
        generate_dataset(work / "mem_long", 1, long_, 128, 10, seed=1, prefix="long")
        rss = {}
        for name, d in (("short", work / "mem_short"), ("long", work / "mem_long")):
            rss[name] = peak_rss_mb(["extract", "--quiet", "--set", f"data.videos={d / 'videos'}",
                                     "--set", f"extract.cache={work / ('mem_cache_' + name)}",
                                     "--set", "extract.backbones=[mobilenet_v3_small]",
                                     "--set", "extract.weights=random", "--set", "extract.input_size=96"])
        res["peak_rss_mb_short"] = rss["short"]
        res["peak_rss_mb_long"] = rss["long"]
        res["peak_rss_growth_mb"] = rss["long"] - rss["short"]
        res["memory_frames"] = {"short": short, "long": long_}
    if stage2:
        res["stage2"] = stage2_figures(dim=bb.dim)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
    return res


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
             f"Keras backend: {res['machine'].get('keras_backend', 'tensorflow')}", ""]
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
    for kind, v in res.get("stage2", {}).items():
        lines += [row(f"stage 2 {kind}: train via loader (frames/s)", v["train_loader_frames_per_s"]),
                  row(f"stage 2 {kind}: train in memory (frames/s)", v["train_in_memory_frames_per_s"]),
                  row("  loader / in memory", v["loader_vs_in_memory"], "target >= 0.9"),
                  row(f"stage 2 {kind}: inference (frames/s)", v["inference_frames_per_s"])]
    return "\n".join(lines)
