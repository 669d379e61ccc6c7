"""``mouse-pipeline cache import``: features made by another tool, into the feature cache."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import common_options, config_options, get_config, handle_errors


@click.command("import")
@config_options
@click.option("--name", required=True,
              help="Stream name to store the features under (CACHE/NAME/<video>.h5); name it in "
                   "extract.backbones to train on it. Not a backbone of the registry.")
@click.option("--from", "source_dir", type=click.Path(path_type=Path), required=True,
              help="Folder of feature files, one per video named after it (<video stem>.npy|.h5|.csv), "
                   "one row per decoded frame.")
@click.option("--tool", required=True,
              help="What made the features (free text, recorded in every file), e.g. 'DeepLabCut 2.3 + "
                   "SimBA features'.")
@click.option("--format", "fmt", type=click.Choice(["auto", "npy", "h5", "csv"]), default="auto",
              help="Read only files of this format (auto: by suffix).")
@click.option("--h5-dataset", default=None,
              help="For .h5 files: the dataset to read (default: the file's only dataset).")
@click.option("--overwrite", is_flag=True, help="Re-import even files that are up to date.")
@common_options
@handle_errors
def cache_import_command(config_path, overrides, name, source_dir, tool, fmt, h5_dataset, overwrite,
                         debug, quiet):
    """Import per-frame features made by another tool for the config's videos (data.videos).

    Every file is checked first (one per video, rows = the video's decoded frames, all
    finite, the same number of features in every file); any problem stops the command
    before anything is written. Files already imported from the same content for the same
    video are skipped.

    \b
    Examples:
      mouse-pipeline cache import --config my.yaml --name simba --from simba_out/ --tool "SimBA 1.7"
      mouse-pipeline cache import --config my.yaml --name flow --from flow/ --tool flownet \\
        --format h5 --h5-dataset features
      mouse-pipeline train --config my.yaml --set "extract.backbones=[simba]"
    """
    cfg = get_config(config_path, overrides)
    from mouse_pipeline.features.importing import import_features

    summary = import_features(cfg, name, source_dir, tool, fmt=fmt, h5_dataset=h5_dataset,
                              overwrite=overwrite, progress=not quiet)
    click.echo(summary.describe())


if __name__ == "__main__":
    cache_import_command()
