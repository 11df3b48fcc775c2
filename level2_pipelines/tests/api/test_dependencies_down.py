"""The service starts and answers with its dependencies away: with no tracking server it
listens at once, says on /ready which dependency is missing and why, and refuses predictions
with a 503 naming it; with the prediction log's database away it serves and keeps the answers.
(Bringing them back, with real servers: `tests/team/test_faults.py`.)"""

import threading
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from level2_pipelines.api import create_app
from level2_pipelines.settings import Settings
from level2_pipelines.tests.api.test_monitoring import make_settings, served_model  # noqa: F401
from shared.contract import EXAMPLE_PAYLOAD
from shared.servers import free_port

STARTED_WITHIN_S = 30  # the bound is ~3 s (connection refused, 2 retries); the machine is busy


def started_within(app, seconds: float) -> TestClient:
    """The app's client, its lifespan run in a thread that must finish within `seconds`."""
    client = TestClient(app)
    done = threading.Thread(target=client.__enter__, daemon=True)
    done.start()
    done.join(seconds)
    assert not done.is_alive(), f"the service had not started after {seconds} s"
    return client


def metric(client: TestClient, name: str) -> float:
    families = text_string_to_metric_families(client.get("/metrics").text)
    return sum(s.value for f in families for s in f.samples if s.name == name)


@pytest.fixture
def no_tracking_server(tmp_path) -> Settings:
    """Settings whose tracking server is a loopback port nobody listens on."""
    uri = f"http://127.0.0.1:{free_port()}"
    return Settings(state_dir=tmp_path, tracking_uri=uri, prediction_log=False, poll_seconds=0.5)


def test_service_without_tracking_server_starts_and_names_it_on_ready(no_tracking_server):
    """It listens within the bound; /health is 200; /ready and /predict are 503 naming the
    tracking server, its address and why."""
    uri = no_tracking_server.resolved_tracking_uri

    client = started_within(create_app(no_tracking_server), STARTED_WITHIN_S)
    try:
        health = client.get("/health")
        ready = client.get("/ready")
        predict = client.post("/predict", json=EXAMPLE_PAYLOAD)
    finally:
        client.__exit__(None, None, None)

    assert health.status_code == 200
    named = f"mlflow: the tracking server at {uri} cannot be reached (connection refused)"
    assert (ready.status_code, ready.json()["detail"]) == (503, named)
    assert (predict.status_code, predict.json()["detail"]) == (503, named)


def test_service_with_prediction_log_database_down_serves_and_keeps_answers(
    tmp_path,
    served_model,  # noqa: F811
):
    """A PostgreSQL log nobody answers for: the service starts, answers 200, keeps every answer
    in memory, and /ready names the log while it serves."""
    uri = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    settings = make_settings(tmp_path, prediction_log_uri=uri)

    client = started_within(create_app(settings, served_model, record=True), STARTED_WITHIN_S)
    try:
        answers = [client.post("/predict", json=EXAMPLE_PAYLOAD) for _ in range(5)]
        log = client.app.state.prediction_log
        deadline = time.monotonic() + 20
        while log.problem is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first flush has to fail first
        ready = client.get("/ready")
        pending = metric(client, "penguins_prediction_log_pending_rows")
    finally:
        client.__exit__(None, None, None)

    assert [a.status_code for a in answers] == [200] * 5
    assert log.pending == 5 and log.dropped == 0
    assert pending == 5
    assert ready.status_code == 200
    assert ready.json()["problem"].startswith("prediction log: cannot write (OperationalError")
