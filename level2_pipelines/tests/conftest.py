"""Fixtures for level 2's tests: a temporary state folder (MLflow store, data docs, quarantine),
one Prefect test harness for the whole session, and the flow runs the scenarios share.

The fixtures import what they use, not this file's top: a parallel run (pytest-xdist) loads
the conftests once more in its controller, which runs no test, and MLflow, GX and Prefect
would be ~10 s of waiting before any test starts."""

import os
import tempfile
from pathlib import Path

# Prefect reads these when first imported, so they are set before anything imports it: a
# private home and a patient start-up timeout for the harness's server on this 2-core machine.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="level2-prefect-"))
os.environ.setdefault("PREFECT_HOME", str(_PREFECT_HOME))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_ENABLE_TELEMETRY", "false")

import pytest  # noqa: E402

from level2_pipelines.settings import Settings  # noqa: E402  (pydantic only: cheap)

HARNESS_STARTUP_S = 180


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory) -> Path:
    """One level 2 state folder for the session; each test uses its own registered model."""
    path = tmp_path_factory.mktemp("level2-state")
    previous = os.environ.get("LEVEL2_STATE_DIR")
    os.environ["LEVEL2_STATE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("LEVEL2_STATE_DIR")
    else:
        os.environ["LEVEL2_STATE_DIR"] = previous


@pytest.fixture
def settings(state_dir, monkeypatch, request) -> Settings:
    """Settings for one test: the session's store, a registered model named after the test."""
    name = "penguins-" + request.node.name.replace("[", "-").replace("]", "")[:60]
    monkeypatch.setenv("LEVEL2_MODEL_NAME", name)
    monkeypatch.setenv("LEVEL2_PORT", "1")  # no service: deploy reports "not running"
    monkeypatch.setenv("LEVEL2_ADMIN_TOKEN", "a-test-token-nobody-guesses")
    from level2_pipelines.tracking import connect

    settings = Settings()
    connect(settings)
    return settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """The service over one fixed model (no registry), admin token "s3cret"."""
    from fastapi.testclient import TestClient

    from level2_pipelines.api import ServedModel, create_app
    from level2_pipelines.data import features_and_target, reference_and_new_rows
    from level2_pipelines.model import build_pipeline
    from level2_pipelines.predict import serving_predictor
    from level2_pipelines.tests.helpers import LINEAGE

    reference, _ = reference_and_new_rows(42)
    pipeline = build_pipeline(42).fit(*features_and_target(reference))
    model = ServedModel(lineage=LINEAGE, predictor=serving_predictor(pipeline))
    settings = Settings(state_dir=tmp_path_factory.mktemp("api"), admin_token="s3cret")
    with TestClient(create_app(settings, model)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def candidate(state_dir):
    """One model logged as the train stage logs it, registered again by each test that needs
    versions without a flow run (registering is a fast registry write; logging is not)."""
    from level2_pipelines.tests.helpers import log_candidate
    from level2_pipelines.tracking import connect

    settings = Settings()
    connect(settings)
    return log_candidate(settings)


@pytest.fixture(scope="session")
def prefect_api():
    """Prefect's test harness: a temporary API and database, started once per session."""
    # Imported here, not at the top: it imports Prefect's whole server (~5 s), which only the
    # worker that runs the flow tests needs (conftest.py at the root keeps them on one).
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=HARNESS_STARTUP_S):
        yield
