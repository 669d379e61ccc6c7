"""``mouse-pipeline bench``: the pose stream's frames/s (pose features, no CNN).

A synthetic pose file of realistic length (:data:`POSE_FRAMES` frames, 30 minutes at
10 frames/s, seven body parts with their tracking noise and dropouts) is made by
repeating the pose file of a short synthetic video, and taken through the pose stream's
own path (:func:`mouse_pipeline.features.pose_stream.write_pose_file`): read the file,
interpolate, compute the features, write the cache file atomically. Reported: that path's
frames/s, and the computation alone (:func:`mouse_pipeline.pose_features.compute` on the
points in memory). Not counted: probing the video's frame count, which extract does for
any stream.
"""

from __future__ import annotations

import time
from pathlib import Path

POSE_FRAMES = 18_000


def _long_pose_file(work: Path, frames: int) -> tuple[Path, Path]:
    """A synthetic video (short) and a pose file of ``frames`` rows (its own, repeated)."""
    from .synthetic import generate_dataset

    generate_dataset(work / "pose_synth", n_videos=1, n_frames=300, size=32, fps=10, seed=0, prefix="bench")
    lines = (work / "pose_synth" / "pose" / "bench_000.csv").read_text().splitlines()
    header, body = lines[:3], [line.split(",", 1)[1] for line in lines[3:]]
    rows = [f"{i},{body[i % len(body)]}" for i in range(frames)]
    long_file = work / "pose_long" / "bench_000.csv"
    long_file.parent.mkdir(parents=True, exist_ok=True)
    long_file.write_text("\n".join(header + rows) + "\n")
    return work / "pose_synth" / "videos" / "bench_000.mp4", long_file


def pose_figures(work: Path, frames: int = POSE_FRAMES) -> dict:
    """``pose_features_frames_per_s`` (read + compute + write) and
    ``pose_compute_frames_per_s`` (compute only), the fastest of two runs each."""
    from .config import load_config
    from .features.planning import describe_videos
    from .features.pose_stream import PoseJob, geometry, read_points, settings, write_pose_file
    from .fileio import sha256_file
    from .pose_features import compute

    video, pose_file = _long_pose_file(work, frames)
    cfg = load_config(None, [f"data.videos={video}", f"data.crop.pose={pose_file.parent}",
                             f"extract.cache={work / 'pose_cache'}", "extract.backbones=[pose]"])
    job = PoseJob(describe_videos(cfg)[0], pose_file, sha256_file(pose_file), frames, 10.0)
    target = work / "pose_cache" / "pose" / "bench_000.h5"
    full = []
    for _ in range(2):
        t0 = time.perf_counter()
        write_pose_file(cfg, job, "bench", target)
        full.append(time.perf_counter() - t0)
    parts, xy, like = read_points(cfg, job)
    geom, threshold = geometry(cfg, parts), settings(cfg)["min_likelihood"]
    alone = []
    for _ in range(2):
        t0 = time.perf_counter()
        compute(xy, like, geom, 10.0, threshold)
        alone.append(time.perf_counter() - t0)
    return {"pose_features_frames_per_s": frames / min(full), "pose_compute_frames_per_s": frames / min(alone),
            "pose_frames": frames, "pose_bodyparts": len(parts)}


def format_pose(res: dict, row) -> list[str]:
    """The pose rows of :func:`mouse_pipeline.bench.format_bench` (none when not measured)."""
    if "pose_features_frames_per_s" not in res:
        return []
    n, k = res["pose_frames"], res["pose_bodyparts"]
    return [row(f"pose features, {n} frames x {k} parts: read + compute + write (frames/s)",
                res["pose_features_frames_per_s"]),
            row("  pose features, compute only (frames/s)", res["pose_compute_frames_per_s"])]
