"""``mouse-pipeline report``: metrics tables, figures and report.html from a run folder."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import common_options, handle_errors


@click.command("report")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Run folder written by `mouse-pipeline train`.")
@common_options
@handle_errors
def report_command(run_dir, debug, quiet):
    """Score out-of-fold predictions and write report.html, report.md, metrics.csv, metrics.json.

    \b
    Examples:
      mouse-pipeline report --run demo_out/run
    """
    from mouse_pipeline.report import write_report
    from mouse_pipeline.runlog import run_log

    with run_log(run_dir, "report"):
        html = write_report(run_dir)
    click.echo(f"report: {html.resolve()}")


if __name__ == "__main__":
    report_command()
