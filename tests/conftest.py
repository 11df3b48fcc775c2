"""Fixtures for the tests that span levels: each level's model, made once per session."""

from pathlib import Path

import pytest

from level0_notebook.run import execute
from level1_devops.train import train


@pytest.fixture(scope="session")
def level0_output(tmp_path_factory) -> Path:
    """The level 0 notebook executed once, into a temporary state folder."""
    output_dir = tmp_path_factory.mktemp("level0")
    execute(output_dir)
    return output_dir


@pytest.fixture(scope="session")
def level1_model_dir(tmp_path_factory) -> Path:
    """A level 1 model and card, trained once."""
    directory = tmp_path_factory.mktemp("level1")
    train(directory, seed=42)
    return directory
