"""``mouse-pipeline train``: stage 2, sequence models on the cache with per-video folds."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import (
    common_options,
    config_options,
    get_config,
    handle_errors,
    ray_option,
    with_ray,
)


@click.command("train")
@config_options
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder (default: train.run of the config).")
@click.option("--final", is_flag=True,
              help="Also train one model per backbone x model on all labelled videos, for predict.")
@click.option("--overwrite", is_flag=True, help="Delete the run folder's results and start again.")
@ray_option
@common_options
@handle_errors
def train_command(config_path, overrides, run_dir, final, overwrite, ray_address, debug, quiet):
    """Train LSTM/TCN models on cached embeddings, fold by fold, and save out-of-fold predictions.

    A killed or interrupted run resumes where it stopped when run again with the same config
    (train.workers and --ray may differ: they run trials in parallel without changing results).

    \b
    Examples:
      mouse-pipeline train --config configs/demo.yaml --final
      mouse-pipeline train --config configs/thesis.yaml --run runs/thesis --set train.models=[tcn]
      mouse-pipeline train --config configs/thesis.yaml --set train.workers=4
      mouse-pipeline train --config configs/thesis.yaml --ray auto
    """
    cfg = with_ray(get_config(config_path, overrides), ray_address)  # a config error needs no engine
    from mouse_pipeline.paths import check_output_folder

    if run_dir is not None:
        check_output_folder(run_dir, "--run")
    from mouse_pipeline.runlog import run_log
    from mouse_pipeline.sequences.training import train

    with run_log(run_dir if run_dir is not None else cfg.train.run, "train"):
        run = train(cfg, run_dir=run_dir, final=final, progress=not quiet, overwrite=overwrite)
    click.echo(f"run written to {run}  (next: mouse-pipeline report --run {run})")


if __name__ == "__main__":
    train_command()
