"""Shared test set-up: quiet TensorFlow, headless matplotlib, a CLI runner helper."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402


@pytest.fixture
def run_cli():
    """Invoke ``mouse-pipeline`` in-process; returns the click Result."""
    from stages.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke
