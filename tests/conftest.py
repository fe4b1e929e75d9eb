"""Shared fixtures: the real models are loaded once per session."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config):
    from shared_data import DATA

    if not (DATA / "manifest.csv").is_file():
        raise pytest.UsageError(
            f"the development data is missing: the tests read real recordings from {DATA} "
            "(a checkout of the project's shared folder beside the repository, as CI has it)")


@pytest.fixture(scope="session")
def pipeline():
    from daemon.pipeline import Pipeline

    return Pipeline()


@pytest.fixture
def mock_factory():
    """gpiozero's own MockFactory, closed afterwards."""
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.close()
