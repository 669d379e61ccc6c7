"""``mouse-pipeline extract``: stage 1, CNN embeddings of every frame into the HDF5 cache."""

from __future__ import annotations

import click

from stages.common import (
    common_options,
    config_options,
    get_config,
    handle_errors,
    ray_option,
    with_ray,
)


@click.command("extract")
@config_options
@click.option("--overwrite", is_flag=True, help="Re-extract even cache files that are up to date.")
@ray_option
@common_options
@handle_errors
def extract_command(config_path, overrides, overwrite, ray_address, debug, quiet):
    """Run the frozen CNN backbone(s) over every video and cache per-frame embeddings.

    Writes CACHE/<backbone>/<video>.h5 for every video and backbone of the config;
    up-to-date files are skipped, stale ones re-extracted.

    \b
    Examples:
      mouse-pipeline extract --config configs/demo.yaml
      mouse-pipeline extract --config configs/thesis.yaml --set extract.batch_size=64
      mouse-pipeline extract --config configs/thesis.yaml --ray auto
    """
    cfg = with_ray(get_config(config_path, overrides), ray_address)  # a config error needs no engine
    from mouse_pipeline.features.extract import extract

    summary = extract(cfg, overwrite=overwrite, progress=not quiet)
    click.echo(summary.describe())


if __name__ == "__main__":
    extract_command()
