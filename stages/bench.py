"""``mouse-pipeline bench``: extraction and training speed and memory, in one run."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import common_options, handle_errors


@click.command("bench")
@click.option("--video", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Video to measure on (default: a synthetic one).")
@click.option("--backbone", default="resnet50v2", show_default=True)
@click.option("--input-size", type=click.IntRange(32, 1024), default=None,
              help="Backbone input side (default: the backbone's).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--frames", type=click.IntRange(64, 100000), default=320, show_default=True,
              help="Frames of the synthetic video.")
@click.option("--parallel-videos", type=click.IntRange(1, 32), default=1, show_default=True,
              help="Also measure extract of this many copies of the video decoding at once "
                   "(extract.decode_workers): how far several decoders feed a fast GPU.")
@click.option("--frame-threads", type=click.IntRange(1, 32), default=1, show_default=True,
              help="extract.frame_threads: threads cropping and resizing each video's frames.")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurement.")
@click.option("--no-stage2", is_flag=True, help="Skip the stage 2 measurements.")
@click.option("--no-cluster", is_flag=True, help="Skip extraction and training on a local Ray.")
@click.option("--no-startup", is_flag=True, help="Skip the start-up times of commands that need no model.")
@click.option("--no-motion", is_flag=True, help="Skip the motion-stream measurements.")
@click.option("--startup-repeats", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Timed runs of each start-up command (the median is reported).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("bench_out/bench.json"),
              show_default=True, help="JSON file for the figures.")
@common_options
@handle_errors
def bench_command(video, backbone, input_size, batch_size, frames, parallel_videos, frame_threads, no_memory,
                  no_stage2, no_cluster, no_startup, no_motion, startup_repeats, out, debug, quiet):
    """Measure start-up times, decode, model, full-extract and per-frame speeds, the motion stream,
    memory, stage 2, Ray.

    \b
    Examples:
      mouse-pipeline bench
      mouse-pipeline bench --video ../shared/data/real/dlc_openfield_m3v1.mp4 --backbone resnet50v2
    """
    from mouse_pipeline.bench import BenchSettings, format_bench, run_bench

    settings = BenchSettings(video=video, backbone=backbone, input_size=input_size, batch=batch_size,
                             frames=frames, memory=not no_memory, stage2=not no_stage2,
                             startup=not no_startup, motion=not no_motion, parallel_videos=parallel_videos,
                             frame_threads=frame_threads, startup_repeats=startup_repeats,
                             cluster=not no_cluster)
    res = run_bench(settings, out=out)
    click.echo(format_bench(res))
    click.echo(f"\nfigures written to {out}")


if __name__ == "__main__":
    bench_command()
