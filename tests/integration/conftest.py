"""Fixtures shared by integration test modules."""

import pytest

from tests.integration.runs import Dataset


@pytest.fixture(scope="session")
def run_dataset(tmp_path_factory):
    """Tiny labelled videos and a new video, extracted once for every run-folder test."""
    return Dataset(tmp_path_factory.mktemp("run_dataset"))
