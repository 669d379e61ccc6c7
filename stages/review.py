"""``mouse-pipeline review``: look at predictions against the video, correct them, save labels."""

from __future__ import annotations

import logging
import webbrowser
from pathlib import Path

import click

from mouse_pipeline.errors import ConfigError
from stages.common import common_options, handle_errors

log = logging.getLogger("mouse_pipeline.review")

EXIT_MISSING_EXTRA = 2


@click.command("review")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Run folder: its config (behaviours, crop, labels) and out-of-fold predictions.")
@click.option("--videos", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="Video files or folders to review (repeatable). Default: the run's labelled videos and "
                   "the videos of --predictions.")
@click.option("--labels", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of annotations to show beside the predictions (default: the run's data.labels).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the corrected labels are saved to (never the annotations folder). "
                   "Without it the page is read-only.")
@click.option("--predictions", "predictions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="A `mouse-pipeline predict` output folder, for videos that are not the run's.")
@click.option("--queue", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV of stretches to review first: video, start_frame, end_frame (or start, end), "
                   "score, why; e.g. suggestions.csv of `mouse-pipeline suggest`.")
@click.option("--model", "model_name", default=None,
              help="Whose out-of-fold predictions to show (backbone/model). Default: the best by the "
                   "report's PR-AUC, or the only one.")
@click.option("--user", default=None, help="Who edits, recorded beside each save (default: the OS user).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but this machine lets others on the network reach "
                   "the page (they still need the token).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port to listen on (0: a free one the system chooses).")
@click.option("--no-browser", is_flag=True, help="Print the URL, do not open a browser.")
@common_options
@handle_errors
def review_command(run_dir, videos, labels, out, predictions_dir, queue, model_name, user, host, port,
                   no_browser, debug, quiet):
    """Review predictions against the video in a local web page; correct them; save labels.

    Shows each video's frames (cropped as the run crops them), the ethograms of the
    predictions and of the annotations, the probability traces and the bouts. Corrections
    are saved as label files (the thesis CSV layout, one row per frame) into --out, with
    who changed what when in <video>.review.json; point data.labels at that folder to
    train on them. The server listens on 127.0.0.1 only and every request needs the
    random token in the printed URL.

    \b
    Examples:
      mouse-pipeline review --run demo_out/run --out reviewed_labels/
      mouse-pipeline review --run demo_out/run --predictions demo_out/predictions --out reviewed_labels/
      mouse-pipeline review --run runs/thesis --videos new/ --queue suggestions.csv --out labels_round2/
    """
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        click.echo("error: review needs the 'review' extra (Starlette, uvicorn): "
                   "pip install 'mouse-pipeline[review]' (or pip install starlette uvicorn)", err=True)
        raise SystemExit(EXIT_MISSING_EXTRA) from None
    from mouse_pipeline.paths import check_output_folder
    from mouse_pipeline.review.server import LOCAL_HOSTS, ReviewServer, open_session

    if out is not None:
        check_output_folder(out, "--out")
    if not host.strip():
        raise ConfigError("--host: empty; leave it out to listen on 127.0.0.1 only")
    session = open_session(run_dir, list(videos) or None, labels, out, predictions_dir, queue, model_name, user)
    server = ReviewServer(session, host, port)
    if host not in LOCAL_HOSTS:
        click.echo(f"warning: listening on {host}, not only on this machine: anyone who can reach "
                   f"port {server.port} and has the URL's token can read these videos and edit labels", err=True)
    click.echo(f"review {len(session.videos)} video(s) at {server.url}")
    click.echo(f"corrected labels go to {session.store.out}" if session.store.writable
               else "read-only: start with --out LABELS_DIR to save corrections")
    click.echo("Ctrl-C stops the server")
    if not no_browser:
        webbrowser.open(server.url)
    server.run()
