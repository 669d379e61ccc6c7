"""``mouse-pipeline init``: start a project folder with a commented config and its folders."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import common_options, handle_errors


@click.command("init")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing FOLDER/config.yaml (folders and files are kept).")
@common_options
@handle_errors
def init_command(folder, force, debug, quiet):
    """Write FOLDER/config.yaml (every key, commented) and create FOLDER's project folders.

    The config's paths are relative to FOLDER: videos/, labels/, pose/, cache/, runs/.

    \b
    Examples:
      mouse-pipeline init my_project
      mouse-pipeline extract --config my_project/config.yaml
    """
    from mouse_pipeline.paths import PROJECT_FOLDERS, init_project

    config = init_project(folder, force=force)
    folders = ", ".join(f"{name}/" for name in PROJECT_FOLDERS)
    click.echo(f"wrote {config} (every key, with its default and a comment) and the folders "
               f"{folders} in {folder}\n"
               "Next:\n"
               f"  1. put your videos into {folder / 'videos'} and one label file per video "
               f"(<video>.csv) into {folder / 'labels'}\n"
               f"  2. edit the data: section of {config} (behaviors, label_format, fps, crop)\n"
               f"  3. mouse-pipeline extract --config {config}\n"
               f"  4. mouse-pipeline train --config {config} --final\n"
               f"  5. mouse-pipeline report --run {folder / 'runs' / 'default'}")


if __name__ == "__main__":
    init_command()
