"""Fixtures for the tests that span levels: each level's model, made once per session.

Like every conftest here, it imports the levels inside the fixtures: pytest-xdist's controller
loads the conftests before it starts its workers, and it runs no test, so what a conftest
imports at its top (scikit-learn, MLflow, GX, Prefect: ~10 s) is a wait before every run."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def level0_output(tmp_path_factory) -> Path:
    """The level 0 notebook executed once, into a temporary state folder."""
    from level0_notebook.run import execute

    output_dir = tmp_path_factory.mktemp("level0")
    execute(output_dir)
    return output_dir


@pytest.fixture(scope="session")
def level1_model_dir(tmp_path_factory) -> Path:
    """A level 1 model and card, trained once."""
    from level1_devops.train import train

    directory = tmp_path_factory.mktemp("level1")
    train(directory, seed=42)
    return directory


@pytest.fixture(scope="module")
def engine():
    """A Docker engine for the image tests (`make test-images`, `make test-devcontainer`):
    started here where none runs, stopped after; without one, the test skips and says why."""
    from tools import images

    try:
        with images.engine():
            yield
    except images.ImageError as error:
        pytest.skip(f"no Docker engine here: {error}")
