"""Fixtures shared by level 1's tests: one model trained per session, and the app over it.

The fixtures import what they use, not this file's top: a parallel run (pytest-xdist) loads
the conftests once more in its controller, which runs no test, and scikit-learn and FastAPI
would be seconds of waiting before any test starts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from level1_devops.api import ServedModel
    from level1_devops.model import ModelCard

SEED = 42


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A model and card trained once for the whole session, in a temporary folder."""
    from level1_devops.train import train

    directory = tmp_path_factory.mktemp("level1-model")
    train(directory, SEED)
    return directory


@pytest.fixture(scope="session")
def card(model_dir) -> ModelCard:
    from level1_devops.model import load_artifact

    return load_artifact(model_dir)[1]


@pytest.fixture(scope="session")
def pipeline(model_dir):
    from level1_devops.model import load_artifact

    return load_artifact(model_dir)[0]


@pytest.fixture(scope="session")
def held_out():
    from level1_devops.data import held_out_rows

    return held_out_rows(SEED)


@pytest.fixture(scope="session")
def served(model_dir) -> ServedModel:
    from level1_devops.api import load_served_model

    return load_served_model(model_dir)


@pytest.fixture(scope="session")
def client(served, tmp_path_factory) -> TestClient:
    from fastapi.testclient import TestClient

    from level1_devops.api import create_app
    from level1_devops.settings import Settings

    settings = Settings(state_dir=tmp_path_factory.mktemp("level1-state"))
    with TestClient(create_app(settings, served)) as test_client:
        yield test_client
