"""``mouse-pipeline overlay``: labelled videos from predict's output."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import common_options, handle_errors


@click.command("overlay")
@click.option("--predictions", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Output folder of `mouse-pipeline predict` (its <video>_predictions.csv files).")
@click.option("--videos", type=click.Path(path_type=Path), multiple=True, required=True,
              help="The predicted video files or folders (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the <video>_overlay.mp4 files (default: the predictions folder).")
@common_options
@handle_errors
def overlay_command(predictions, videos, out, debug, quiet):
    """Write each video with its ethogram strip, current labels and probabilities drawn on it.

    \b
    Examples:
      mouse-pipeline overlay --predictions demo_out/predictions --videos demo_out/data_new/videos
    """
    from mouse_pipeline.overlay import overlay_predictions
    from mouse_pipeline.paths import check_output_folder

    if out is not None:
        check_output_folder(out, "--out")
    written = overlay_predictions(predictions, list(videos), out)
    for path in written:
        click.echo(f"written {path}")
