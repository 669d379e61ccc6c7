"""The stage 2 figures of ``mouse-pipeline bench``: loader speed, inference, memory.

- training frames/s through the project's window loader vs. a bare Keras ``fit`` on the
  same windows held in memory (the loader must not be what limits training), and through
  the loader reading every window from cache files (what ``train.memory_gb`` buys);
- sequence-model inference frames/s;
- peak resident memory of ``predict`` on a video and on one ten times longer, and of
  ``train`` on a labelled set and on one ten times longer, with the embeddings read as
  needed (``train.memory_gb`` below their size) and in memory: windows are read from the
  cache as needed, so memory must not grow with the length of the videos.

Every memory figure is a child process's peak (:func:`mouse_pipeline.bench.peak_rss_mb`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: Backbone and input side of the memory runs: 2048-d embeddings as ResNet50V2 gives,
#: at a side small enough that extracting the long videos takes seconds.
MEMORY_BACKBONE, MEMORY_SIZE = "resnet50v2", 32
#: Frames of the short and the long video of the memory runs (ten times longer).
MEMORY_FRAMES = (3000, 30000)


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def _cached_sources(work: Path, xs: list[np.ndarray]) -> list:
    """``xs`` written to HDF5 files and opened as the training loader opens cache files."""
    import h5py

    from .dataset import CachedFeatures
    from .features.store import DATASET

    work.mkdir(parents=True, exist_ok=True)
    out = []
    for i, x in enumerate(xs):
        path = work / f"v{i}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset(DATASET, data=x, chunks=(min(len(x), 256), x.shape[1]))
        out.append(CachedFeatures(path, x.shape))
    return out


def stage2_figures(dim: int, frames_per_video: int = 3000, videos: int = 4, epochs: int = 2,
                   work: Path | None = None) -> dict:
    """Training frames/s through the window loader (in memory and read from files) vs.
    in-memory fit; inference frames/s."""
    import keras

    from .config import TrainConfig
    from .sequences.inference import predict_video
    from .sequences.loader import WindowSequence
    from .sequences.models import build_model
    from .sequences.windows import default_stride

    rng = np.random.default_rng(0)
    cfg = TrainConfig()
    length, stride, bs = cfg.window.length, cfg.window.stride, cfg.batch_size
    xs = [rng.normal(size=(frames_per_video, dim)).astype(np.float32) for _ in range(videos)]
    ys = [(rng.random((frames_per_video, 3)) < 0.1).astype(np.float32) for _ in range(videos)]
    seq = WindowSequence(xs, ys, length, stride, bs, seed=0)
    xw, yw = seq.index.gather(xs, ys, np.arange(seq.n_windows))  # every window, materialised
    streamed = None if work is None else WindowSequence(_cached_sources(work, xs), ys, length, stride, bs, seed=0)
    out = {}
    for kind in ("lstm", "tcn"):
        def fresh(kind=kind):
            keras.utils.set_random_seed(0)
            return build_model(kind, cfg, dim, 3, np.zeros(dim), np.ones(dim), np.ones(3))
        frames = seq.n_windows * length * epochs
        m = fresh()
        m.fit(seq, epochs=1, verbose=0)  # warm-up (graph building)
        t_loader, _ = _timed(m.fit, seq, epochs=epochs, verbose=0, shuffle=False)
        row = {"train_loader_frames_per_s": frames / t_loader}
        if streamed is not None:
            t_stream, _ = _timed(m.fit, streamed, epochs=epochs, verbose=0, shuffle=False)
            row["train_streamed_frames_per_s"] = frames / t_stream
        m = fresh()
        m.fit(xw, yw, batch_size=bs, epochs=1, verbose=0)
        t_mem, _ = _timed(m.fit, xw, yw, batch_size=bs, epochs=epochs, verbose=0)
        row["train_in_memory_frames_per_s"] = len(xw) * length * epochs / t_mem
        row["loader_vs_in_memory"] = row["train_loader_frames_per_s"] / row["train_in_memory_frames_per_s"]
        if streamed is not None:
            row["streamed_vs_in_memory"] = row["train_streamed_frames_per_s"] / row["train_in_memory_frames_per_s"]
        t_inf, _ = _timed(predict_video, m, xs[0], length, default_stride(length))
        row["inference_frames_per_s"] = frames_per_video / t_inf
        out[kind] = row
    return out


def memory_figures(work: Path, peak_rss_mb: Callable[[list[str]], float],
                   frames: tuple[int, int] = MEMORY_FRAMES,
                   backbone: tuple[str, int] = (MEMORY_BACKBONE, MEMORY_SIZE)) -> dict:
    """Peak RSS (MB) of ``predict`` and ``train`` on short videos and ten times longer ones.

    A run is trained once (``--final``, one epoch) on three short labelled videos; then
    ``predict`` labels a new short video and a new long one, extracting their embeddings
    as a user's predict does (decoding, the backbone, the cache, the model, the outputs), and
    ``train`` runs on three short and on three long labelled videos, with the embeddings
    read per window (``train.memory_gb`` far below their size) and held in memory.
    """
    from .config import load_config
    from .features.extract import extract
    from .synthetic import generate_dataset

    short, long_ = frames
    base = ["data.crop.mode=none", f"extract.backbones=[{backbone[0]}]", "extract.weights=random",
            f"extract.input_size={backbone[1]}", "train.models=[lstm]", "train.epochs=1", "train.validation=videos",
            "train.lstm.units=16", "train.window.length=64", "train.window.stride=64",
            "train.folds.scheme=fixed", "train.folds.train=[set_000, set_001]", "train.folds.test=[set_002]"]
    sets = {}
    for name, n in (("short", short), ("long", long_)):
        root = work / f"train_{name}"
        generate_dataset(root, n_videos=3, n_frames=n, size=64, seed=5, prefix="set")
        generate_dataset(root / "new", n_videos=1, n_frames=n, size=64, seed=6, prefix=f"new_{name}")
        sets[name] = [f"data.videos={root / 'videos'}", f"data.labels={root / 'labels'}",
                      f"extract.cache={work / f'cache_{name}'}", *base]
        extract(load_config(None, sets[name]), progress=False)  # the new videos: predict extracts them

    def cli(*args: str, settings: list[str]) -> float:
        return peak_rss_mb([*args, "--quiet", *(a for s in settings for a in ("--set", s))])

    run = work / "run"
    cli("train", "--final", settings=[*sets["short"], f"train.run={run}"])
    res: dict = {"memory_stage2_frames": {"short": short, "long": long_}}
    for name in ("short", "long"):
        new = work / f"train_{name}" / "new" / "videos"
        res[f"peak_rss_mb_predict_{name}"] = peak_rss_mb(
            ["predict", "--quiet", "--run", str(run), "--videos", str(new), "--out", str(work / f"pred_{name}")])
        for mode, budget in (("streamed", "0.001"), ("in_memory", "64")):
            res[f"peak_rss_mb_train_{mode}_{name}"] = cli(
                "train", settings=[*sets[name], f"train.run={work / f'run_{mode}_{name}'}",
                                   f"train.memory_gb={budget}"])
    res["peak_rss_growth_mb_predict"] = res["peak_rss_mb_predict_long"] - res["peak_rss_mb_predict_short"]
    for mode in ("streamed", "in_memory"):
        res[f"peak_rss_growth_mb_train_{mode}"] = (res[f"peak_rss_mb_train_{mode}_long"]
                                                   - res[f"peak_rss_mb_train_{mode}_short"])
    return res


def format_stage2(res: dict, row: Callable[..., str]) -> list[str]:
    """The stage 2 lines of the bench table (``row(name, value, target)``)."""
    lines = []
    for kind, v in res.get("stage2", {}).items():
        lines += [row(f"stage 2 {kind}: train via loader (frames/s)", v["train_loader_frames_per_s"]),
                  row(f"stage 2 {kind}: train in memory (frames/s)", v["train_in_memory_frames_per_s"]),
                  row("  loader / in memory", v["loader_vs_in_memory"], "target >= 0.9")]
        if "train_streamed_frames_per_s" in v:
            lines += [row(f"stage 2 {kind}: train, windows read from files (frames/s)",
                          v["train_streamed_frames_per_s"]),
                      row("  read from files / in memory", v["streamed_vs_in_memory"])]
        lines.append(row(f"stage 2 {kind}: inference (frames/s)", v["inference_frames_per_s"]))
    if "peak_rss_mb_predict_short" in res:
        short, long_ = (res["memory_stage2_frames"][k] for k in ("short", "long"))
        lines += [row(f"peak RSS predict, {short} frames (MB)", res["peak_rss_mb_predict_short"]),
                  row(f"peak RSS predict, {long_} frames (MB)", res["peak_rss_mb_predict_long"]),
                  row("  growth (MB)", res["peak_rss_growth_mb_predict"], "target <= 150")]
        for mode, what in (("streamed", "windows read as needed"), ("in_memory", "embeddings in memory")):
            lines += [row(f"peak RSS train, 3 x {short} frames, {what} (MB)", res[f"peak_rss_mb_train_{mode}_short"]),
                      row(f"peak RSS train, 3 x {long_} frames, {what} (MB)", res[f"peak_rss_mb_train_{mode}_long"]),
                      row("  growth (MB)", res[f"peak_rss_growth_mb_train_{mode}"],
                          "target <= 150" if mode == "streamed" else "")]
    return lines
