"""Shared plumbing for the command-line stages: options, logging, error handling.

Every stage is thin: parse options, load the config, set up logging, call one library
function. A :class:`~mouse_pipeline.errors.PipelineError` becomes one line on stderr and
exit code 2; anything else is a bug: exit 1 (``--debug`` shows the traceback for both).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mouse_pipeline.config import Config, load_config
from mouse_pipeline.errors import PipelineError

EXIT_USER_ERROR = 2
EXIT_BUG = 1


class _TqdmHandler(logging.Handler):
    """Log lines to stderr through ``tqdm.write``, so they never tangle with a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a handler must not raise (logging's own convention)
            self.handleError(record)


def setup_logging(verbose: bool, debug: bool) -> None:
    """INFO (or DEBUG) to stderr with a short format; TensorFlow's loggers kept quiet.

    Called as a command starts, before anything can import TensorFlow (only building or
    running a model does): its C++ start-up chatter is silenced through
    ``TF_CPP_MIN_LOG_LEVEL`` unless the environment sets it already.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    console = _TqdmHandler()
    console.setLevel(level)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[console], force=True)
    logging.getLogger("mouse_pipeline").setLevel(level)
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` and repeatable ``--set KEY=VALUE``."""
    func = click.option(
        "--set", "overrides", multiple=True, metavar="KEY=VALUE",
        help="Override a config value: dotted key, YAML value (repeatable), "
             "e.g. --set extract.batch_size=64",
    )(func)
    func = click.option(
        "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
        default=None, help="YAML config file (defaults: configs/default.yaml's values).",
    )(func)
    return func


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--debug`` (tracebacks, debug logs) and ``--quiet`` (no progress bars, warnings only)."""
    func = click.option("--quiet", is_flag=True, help="No progress bars; warnings and errors only.")(func)
    func = click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")(func)
    return func


def ray_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--ray [ADDRESS]``: run on Ray (``local``, ``auto`` or ``HOST:PORT``; alone: the config's)."""
    return click.option(
        "--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
        help="Run on Ray (pip install 'mouse-pipeline[cluster]'): local (a Ray on this machine), "
             "auto (the running cluster) or HOST:PORT; alone: cluster.ray.address. docs/CLUSTER.md.",
    )(func)


def pose_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--pose DIR``: the new videos' pose files (``predict``, ``suggest``)."""
    return click.option(
        "--pose", "pose_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
        help="Folder of pose files for these videos, when the run crops around a body part or uses pose "
             "features (default: the run's data.crop.pose, or extract.pose_features.pose).",
    )(func)


def with_ray(cfg: Config, address: str | None) -> Config:
    """``cfg`` with ``--ray`` applied; Ray must be installed (else one ConfigError line)."""
    if address is None:
        return cfg
    from mouse_pipeline.cluster import with_ray as apply
    from mouse_pipeline.cluster.ray_runtime import require_ray

    require_ray()
    return apply(cfg, address)


def get_config(config_path: Path | None, overrides: tuple[str, ...]) -> Config:
    """Load the config named on the command line (errors surface as PipelineError)."""
    return load_config(config_path, list(overrides))


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body: set up logging, map errors to exit codes and one-line messages."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.get("debug", False)
        quiet = kwargs.get("quiet", False)
        setup_logging(verbose=not quiet, debug=debug)
        try:
            return func(*args, **kwargs)
        except PipelineError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: say so, point at --debug, exit 1
            if debug:
                raise
            click.echo(f"unexpected error ({type(exc).__name__}): {exc}. "
                       "Re-run with --debug for the traceback and report it.", err=True)
            sys.exit(EXIT_BUG)

    return wrapper
