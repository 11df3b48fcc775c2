"""Fixtures shared by level 1's tests: one model trained per session, and the app over it."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from level1_devops.api import ServedModel, create_app, load_served_model
from level1_devops.data import held_out_rows
from level1_devops.model import ModelCard, load_artifact
from level1_devops.settings import Settings
from level1_devops.train import train

SEED = 42


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A model and card trained once for the whole session, in a temporary folder."""
    directory = tmp_path_factory.mktemp("level1-model")
    train(directory, SEED)
    return directory


@pytest.fixture(scope="session")
def card(model_dir) -> ModelCard:
    return load_artifact(model_dir)[1]


@pytest.fixture(scope="session")
def pipeline(model_dir):
    return load_artifact(model_dir)[0]


@pytest.fixture(scope="session")
def held_out():
    return held_out_rows(SEED)


@pytest.fixture(scope="session")
def served(model_dir) -> ServedModel:
    return load_served_model(model_dir)


@pytest.fixture(scope="session")
def client(served, tmp_path_factory) -> TestClient:
    settings = Settings(state_dir=tmp_path_factory.mktemp("level1-state"))
    with TestClient(create_app(settings, served)) as test_client:
        yield test_client
