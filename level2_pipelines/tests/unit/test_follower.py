"""The service following the registry when the registry misbehaves: a champion that cannot be
loaded is refused without running its code, reported once, named by /ready, and replaced as
soon as a good champion is promoted; a registry that cannot be read is named as such."""

import logging
import time

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from level2_pipelines import rollout
from level2_pipelines.api import create_app
from level2_pipelines.registry import CHAMPION
from level2_pipelines.tests.helpers import add_unsafe_version, add_version
from level2_pipelines.tests.unit.test_model import Trap
from shared.contract import EXAMPLE_PAYLOAD

POLL_S = 0.05


@pytest.fixture
def follow(settings, monkeypatch):
    """The service, following the test's registered model, polling every 50 ms."""
    monkeypatch.setenv("LEVEL2_POLL_SECONDS", str(POLL_S))
    token = settings.admin_token_value()

    def start() -> TestClient:
        return TestClient(
            create_app(type(settings)()), headers={"Authorization": f"Bearer {token}"}
        )

    return start


def make_champion(settings, version: str) -> None:
    MlflowClient().set_registered_model_alias(settings.model_name, CHAMPION, version)


def test_pickled_champion_is_refused_reported_once_and_named_by_ready(
    settings, follow, tmp_path, caplog
):
    """A cloudpickle champion never runs; /ready says why, and the log says it once."""
    marker = tmp_path / "ran.txt"
    make_champion(settings, add_unsafe_version(settings, Trap(marker), "cloudpickle"))

    with caplog.at_level(logging.ERROR), follow() as http:
        time.sleep(20 * POLL_S)  # many polls
        ready = http.get("/ready")

    reports = [r for r in caplog.records if "saved with cloudpickle" in r.getMessage()]
    assert not marker.exists()
    assert ready.status_code == 503
    assert "saved with cloudpickle" in ready.json()["detail"]
    assert len(reports) == 1


def test_good_champion_replaces_one_that_cannot_be_loaded(settings, follow, candidate):
    """After a broken champion, promoting a good one serves it at the next reload."""
    broken = add_version(settings, candidate, artifact_sha256="0" * 64)
    make_champion(settings, broken)

    with follow() as http:
        before = http.get("/ready")
        good = add_version(settings, candidate)
        make_champion(settings, good)
        reloaded = http.post("/admin/reload")
        ready = http.get("/ready")

    assert before.status_code == 503
    assert "SHA-256" in before.json()["detail"]
    assert reloaded.json()["model_version"] == good
    assert ready.json() == {"status": "ready", "model_version": good, "problem": None}


def test_newer_champion_that_cannot_be_loaded_leaves_the_served_one_and_says_so(
    settings, follow, candidate
):
    """A broken new champion: the old model goes on serving, /ready names the problem."""
    make_champion(settings, add_version(settings, candidate))

    with follow() as http:
        served = http.get("/ready").json()["model_version"]
        make_champion(settings, add_version(settings, candidate, fingerprint="f" * 64))
        reload = http.post("/admin/reload")
        ready = http.get("/ready").json()

    assert reload.status_code == 409
    assert reload.json()["detail"].startswith("champion:")
    assert ready["model_version"] == served
    assert "fingerprint" in ready["problem"]


def test_store_error_is_named_not_taken_for_no_champion(settings, follow, monkeypatch):
    """A registry that cannot be read is a 503 naming the registry, not "no champion yet"."""
    with follow() as http:

        def locked(*args, **kwargs):
            raise MlflowException("(sqlite3.OperationalError) database is locked", "INTERNAL_ERROR")

        monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", locked)
        reload = http.post("/admin/reload")
        ready = http.get("/ready")

    assert reload.status_code == 503
    assert reload.json()["detail"].startswith("registry: cannot read")
    assert ready.status_code == 503
    assert "database is locked" in ready.json()["detail"]


def test_a_challenger_that_cannot_be_loaded_leaves_the_champion_answering_alone(
    settings, follow, candidate, tmp_path, caplog
):
    """A pickled challenger rolled out as a canary to every caller never runs: it is said once
    in the log, every answer is the champion's, and /ready stays 200."""
    marker = tmp_path / "ran.txt"
    good = add_version(settings, candidate)
    make_champion(settings, good)
    trap = add_unsafe_version(settings, Trap(marker), "cloudpickle")
    rollout.start(MlflowClient(), settings.model_name, trap, "canary", 1.0, good)

    with caplog.at_level(logging.ERROR), follow() as http:
        time.sleep(20 * POLL_S)  # many polls
        answers = {http.post("/predict", json=EXAMPLE_PAYLOAD).json()["model_version"]}
        answers |= {
            http.post("/predict", json=EXAMPLE_PAYLOAD, headers={"X-Caller-Id": str(n)}).json()[
                "model_version"
            ]
            for n in range(10)
        }
        ready = http.get("/ready")

    reports = [r for r in caplog.records if f"challenger v{trap}" in r.getMessage()]
    assert not marker.exists()
    assert answers == {good}
    assert ready.status_code == 200
    assert len(reports) == 1
    assert "saved with cloudpickle" in reports[0].getMessage()
