"""The ``mouse-pipeline`` command: one group, one thin subcommand per stage."""

from __future__ import annotations

from pathlib import Path

import click

from stages.bench import bench_command
from stages.bench_quality import bench_quality_command
from stages.cache_import import cache_import_command
from stages.common import common_options, config_options, get_config, handle_errors
from stages.extract import extract_command
from stages.init import init_command
from stages.overlay import overlay_command
from stages.predict import predict_command, score_command
from stages.report import report_command
from stages.review import review_command
from stages.suggest import suggest_command
from stages.train import train_command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="mouse-pipeline")
def main():
    """Behaviour labels from top-view mouse video: extract -> train -> report -> predict.

    Each command takes --config FILE and repeatable --set KEY=VALUE overrides;
    see configs/default.yaml for every key.
    """


@main.command("synth")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder (videos/, labels/, pose/ are created in it).")
@click.option("--videos", "n_videos", type=click.IntRange(1, 1000), default=6, help="Number of videos.")
@click.option("--frames", "n_frames", type=click.IntRange(8, 10_000_000), default=600, help="Frames per video.")
@click.option("--size", type=click.IntRange(32, 2048), default=128, help="Frame side in pixels.")
@click.option("--fps", type=click.FloatRange(0.1, 1000, min_open=False), default=10.0, help="Frames per second.")
@click.option("--seed", type=int, default=0, help="Random seed (same seed, same data).")
@click.option("--prefix", default="mouse", help="Video ids are PREFIX_000, PREFIX_001, ...")
@click.option("--grooming-cue", type=click.Choice(["static", "motion"]), default="static",
              help="static: grooming is seen in one frame (sitting, forepaws at the face); motion: "
                   "one frame of grooming looks like rest, only its rhythmic movement shows it.")
@common_options
@handle_errors
def synth_command(out, n_videos, n_frames, size, fps, seed, prefix, grooming_cue, debug, quiet):
    """Write a deterministic synthetic dataset: videos, per-frame labels and DLC pose.

    \b
    Examples:
      mouse-pipeline synth --out data/synth --videos 3 --frames 120 --size 128 --seed 1
      mouse-pipeline synth --out data/motion --grooming-cue motion
    """
    from mouse_pipeline.synthetic import generate_dataset

    ids = generate_dataset(out, n_videos=n_videos, n_frames=n_frames, size=size, fps=fps, seed=seed,
                           prefix=prefix, grooming_cue=grooming_cue)
    click.echo(f"wrote {len(ids)} videos of {n_frames} frames to {out}/videos "
               f"(labels in {out}/labels, pose in {out}/pose)")


@main.group("cache")
def cache_group():
    """Inspect the feature cache, or import features made by another tool into it."""


@cache_group.command("ls")
@click.argument("cache", type=click.Path(exists=True, file_okay=False, path_type=Path))
@config_options
@common_options
@handle_errors
def cache_ls_command(cache, config_path, overrides, debug, quiet):
    """List what is cached: video, backbone, frames, dim, dtype, size, stale or not.

    When the cache holds imported features (`cache import`), their tool and source file
    are shown too.

    Without --config a file is judged against its video and the backbone folder it is
    in; with --config (or --set) also against that config's extract settings (weights,
    input size, crop, dtype, precision), as extract would judge it.

    \b
    Examples:
      mouse-pipeline cache ls cache/
      mouse-pipeline cache ls cache/ --config configs/thesis.yaml
    """
    from mouse_pipeline.features.planning import cache_table

    cfg = get_config(config_path, overrides) if config_path is not None or overrides else None
    rows = cache_table(cache, cfg)
    if not rows:
        click.echo(f"{cache}: no cached embeddings")
        return
    # tool and source are those of imported features: shown when the cache holds any
    cols = [c for c in rows[0] if c not in ("tool", "source") or any(r[c] != "-" for r in rows)]
    widths = {c: max(len(str(c)), *(len(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(str(c).ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


cache_group.add_command(cache_import_command)
main.add_command(extract_command)
main.add_command(train_command)
main.add_command(report_command)
main.add_command(predict_command)
main.add_command(score_command)
main.add_command(bench_command)
main.add_command(bench_quality_command)
main.add_command(init_command)
main.add_command(review_command)
main.add_command(suggest_command)
main.add_command(overlay_command)


if __name__ == "__main__":
    main()
