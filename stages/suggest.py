"""``mouse-pipeline suggest``: which minutes of unannotated video to annotate next."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import common_options, handle_errors, pose_option


@click.command("suggest")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Trained run folder (its fold models and final models are used).")
@click.option("--videos", type=click.Path(path_type=Path), multiple=True, required=True,
              help="Video files or folders to choose from (repeatable).")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Total length of the suggested windows, in minutes.")
@click.option("--window-s", type=click.FloatRange(0, min_open=True), default=60.0, show_default=True,
              help="Length of each window (non-overlapping), in seconds.")
@click.option("--labels", "labels_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of label files (the run's label format): windows holding an "
                                 "annotated frame there are not suggested.")
@pose_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("suggestions.csv"),
              show_default=True, help="The CSV to write.")
@common_options
@handle_errors
def suggest_command(run_dir, videos, minutes, window_s, labels_dir, pose_dir, out, debug, quiet):
    """Rank windows of the videos by how uncertain the run's models are; write the best.

    A window's score is near_threshold + disagreement + rare (each 0-1: probability near
    each model's threshold, spread between the fold and final models, probability of a
    rare behaviour); `why` names the largest term and its behaviour.

    \b
    Examples:
      mouse-pipeline suggest --run demo_out/run --videos unlabelled/ --minutes 5
      mouse-pipeline suggest --run runs/thesis --videos new/ --labels labels/ --window-s 30
      mouse-pipeline suggest --run runs/thesis --videos new/ --pose new_pose/
    """
    from mouse_pipeline.paths import check_output_folder
    from mouse_pipeline.runlog import run_log
    from mouse_pipeline.suggest import suggest

    if out.is_dir():
        raise click.UsageError(f"--out {out}: is a folder; name the CSV file to write")
    check_output_folder(out.parent, f"--out {out}: its folder")
    with run_log(run_dir, "suggest"):
        chosen = suggest(run_dir, list(videos), out, minutes=minutes, window_s=window_s,
                         labels_dir=labels_dir, progress=not quiet, pose_dir=pose_dir)
    total = sum((w.stop - w.start) / w.fps for w in chosen)
    click.echo(f"{len(chosen)} window(s), {total / 60:.2f} min, in {out}")
    for i, w in enumerate(chosen[:10]):
        click.echo(f"  {i + 1:>3}  {w.video}  {w.start / w.fps:8.1f}-{w.stop / w.fps:<8.1f} s  "
                   f"score {w.score:.3f}  {w.why}")
