"""``mouse-pipeline bench-quality``: out-of-fold PR-AUC of every head on hard synthetic regimes."""

from __future__ import annotations

from pathlib import Path

import click

from stages.common import common_options, handle_errors


@click.command("bench-quality")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("bench_out/quality"),
              show_default=True, help="Folder for the regimes' videos, caches and runs (reused when rerun).")
@click.option("--regime", "regimes", multiple=True,
              help="Regime to run (repeatable; default: all): few_videos, edge_noise, rare, no_cue, pretrained.")
@click.option("--model", "models", multiple=True,
              help="Model to train (repeatable; default: every head and auto).")
@click.option("--validation", "validations", multiple=True,
              help="train.validation modes compared on few_videos (repeatable; default: all; "
                   "the first is used on the other regimes).")
@click.option("--pt-python", type=click.Path(exists=True, dir_okay=False), envvar="PT_PYTHON", default=None,
              help="Python of a virtual environment with the pretrained-features tool's packages "
                   "(../shared/tools/pretrained_features.py); without it the pretrained regime is skipped.")
@click.option("--streams-on", "streams_on", multiple=True, default=("no_cue",), show_default=True,
              help="Regime whose videos also train RGB, RGB + motion, pose and all three streams "
                   "(repeatable; 'none' for no stream comparison).")
@click.option("--stream-model", "stream_models", multiple=True,
              help="Model trained on each stream set (repeatable; default: lstm and tcn).")
@click.option("--resume", is_flag=True,
              help="Keep the finished folds of the work folder's earlier runs (train refuses a run of another "
                   "config) instead of training every model again; the seconds then count only what was trained.")
@click.option("--seed", "seeds", type=int, multiple=True,
              help="Seed of the regimes' videos (default: the protocol's fresh seed, 2026); another seed "
                   "needs its own --work folder. Repeat it to run the protocol once per seed "
                   "(in <work>/seed_<N>) and print the figures over the seeds: how much one seed's verdict moves.")
@common_options
@handle_errors
def bench_quality_command(work, regimes, models, validations, pt_python, streams_on, stream_models, resume,
                          seeds, debug, quiet):
    """Train every head, auto and a per-frame logistic regression on hard synthetic regimes.

    \b
    Examples:
      mouse-pipeline bench-quality
      PT_PYTHON=pt-venv/bin/python mouse-pipeline bench-quality --regime pretrained
      mouse-pipeline bench-quality --regime few_videos --validation blocks --seed 2026 --seed 2027
    """
    from mouse_pipeline import bench_quality as bq

    names = [r.name for r in bq.REGIMES]
    unknown = [r for r in regimes if r not in names]
    if unknown:
        raise click.BadParameter(f"unknown regime(s) {unknown}; expected some of {names}", param_hint="--regime")
    kwargs = dict(regimes=list(regimes) or names, models=list(models) or [*bq.HEADS, "auto"],
                  validations=list(validations) or list(bq.VALIDATION_MODES), pt_python=pt_python,
                  streams_on=tuple(r for r in streams_on if r != "none"),
                  stream_models=tuple(stream_models) or None, resume=resume)
    if len(set(seeds)) > 1:
        from mouse_pipeline import bench_seeds

        summary = bench_seeds.run_seeds(work, list(dict.fromkeys(seeds)), **kwargs)
        click.echo(bench_seeds.format_seeds(summary))
        click.echo(f"\nfigures written to {work / 'bench_quality_seeds.json'} and {work / 'bench_quality_seeds.md'}"
                   f" (each seed's own in {work}/seed_<N>)")
        return
    out = bq.run_quality(work, seed=seeds[0] if seeds else bq.SEED, **kwargs)
    text = bq.format_quality(out)
    (work / "bench_quality.md").write_text(text + "\n")
    click.echo(text)
    click.echo(f"\nfigures written to {work / 'bench_quality.json'} and {work / 'bench_quality.md'}")
