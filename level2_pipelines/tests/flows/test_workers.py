"""Two uvicorn workers behind one port (LEVEL2_WORKERS=2): /metrics adds every worker's counts
up, whichever worker answers the scrape, and the prediction log, written by each worker from
its own buffer, holds every answer after a clean stop; and a rollout is one for all workers."""

import time

import httpx
import pytest
from mlflow import MlflowClient

from level2_pipelines import registry, rollout
from level2_pipelines.metrics import requests_by_worker
from level2_pipelines.tests.api.test_monitoring import logged_rows, scrape, wait_for
from level2_pipelines.tests.api.test_rollout import shadow_rows
from level2_pipelines.tests.helpers import add_version
from shared.contract import EXAMPLE_PAYLOAD
from shared.servers import free_port, running_server

WORKERS = 2
MAX_REQUESTS = 400  # enough for both workers to answer some, by far
EACH_AT_LEAST = 10
STARTUP_S = 120  # both workers load the champion; the first answers /health before


def serving(samples: dict[str, dict[tuple, float]]) -> dict[str, float]:
    """Registry version -> how many workers serve it, as /metrics shows it."""
    shown = samples.get("penguins_served_model_info", {})
    return {dict(labels)["version"]: n for labels, n in shown.items() if n}


def every_worker_answered(spread: dict[int, int]) -> bool:
    return len(spread) == WORKERS and min(spread.values()) >= EACH_AT_LEAST


@pytest.mark.slow
def test_two_workers_metrics_show_the_service_totals(settings, candidate, tmp_path):
    """Requests on new connections until both workers answered some: /metrics counts every one
    of them and both workers serving the champion; the log keeps one row per answer."""
    version = add_version(settings, candidate)
    registry.promote(MlflowClient(), settings.model_name, version, registry.CHAMPION, None)
    port = free_port()
    served = settings.model_copy(
        update={"port": port, "prediction_log_uri": f"sqlite:///{tmp_path / 'log.db'}"}
    )
    env = {
        "LEVEL2_STATE_DIR": str(settings.state_dir),
        "LEVEL2_MODEL_NAME": settings.model_name,
        "LEVEL2_PORT": str(port),
        "LEVEL2_WORKERS": str(WORKERS),
        "LEVEL2_PREDICTION_LOG_URI": served.resolved_prediction_log_uri,
    }
    with running_server("level2_pipelines.serve", env, port, "/health") as base_url:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            wait_for(lambda: serving(scrape(client)) == {version: WORKERS}, STARTUP_S)
        sent, spread = 0, {}
        while sent < MAX_REQUESTS and not every_worker_answered(spread):
            # A new connection each time: each is accepted by whichever worker is first.
            assert httpx.post(f"{base_url}/predict", json=EXAMPLE_PAYLOAD).status_code == 200
            sent += 1
            spread = requests_by_worker(served.worker_metrics_dir, "/predict")
        with httpx.Client(base_url=base_url, timeout=10) as client:
            samples = scrape(client)

    assert every_worker_answered(spread)
    counted = samples["http_requests_total"]
    assert counted[(("handler", "/predict"), ("method", "POST"), ("status", "200"))] == sent
    assert sum(samples["penguins_predictions_total"].values()) == sent
    assert sum(spread.values()) == sent
    assert len(logged_rows(served)) == sent


@pytest.mark.slow
def test_two_workers_share_one_rollout(settings, candidate, tmp_path):
    """Each worker follows the registry's challenger on its own: a canary caller meets the same
    model whichever worker answers; switched to shadow, every answer has the challenger's beside
    it in the log after a clean stop."""
    client = MlflowClient()
    name = settings.model_name
    first, second = add_version(settings, candidate), add_version(settings, candidate)
    registry.promote(client, name, first, registry.CHAMPION, None)
    rollout.start(client, name, second, "canary", 0.5, first)
    port = free_port()
    served = settings.model_copy(
        update={"port": port, "prediction_log_uri": f"sqlite:///{tmp_path / 'log.db'}"}
    )
    env = {
        "LEVEL2_STATE_DIR": str(settings.state_dir),
        "LEVEL2_MODEL_NAME": name,
        "LEVEL2_PORT": str(port),
        "LEVEL2_WORKERS": str(WORKERS),
        "LEVEL2_POLL_SECONDS": "0.5",
        "LEVEL2_PREDICTION_LOG_URI": served.resolved_prediction_log_uri,
    }
    callers = [f"caller-{n}" for n in range(60)]

    def versions() -> dict[str, str]:
        # A new connection each time: whichever worker is first takes it.
        return {
            caller: httpx.post(
                f"{base_url}/predict", json=EXAMPLE_PAYLOAD, headers={"X-Caller-Id": caller}
            ).json()["model_version"]
            for caller in callers
        }

    with running_server("level2_pipelines.serve", env, port, "/health") as base_url:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            wait_for(lambda: serving(scrape(http)) == {first: WORKERS}, STARTUP_S)
        # Both workers have the canary once both answer some callers with it.
        wait_for(lambda: len(set(versions().values())) == 2, STARTUP_S)
        spread_before = requests_by_worker(served.worker_metrics_dir, "/predict")
        once, again = versions(), versions()
        spread = requests_by_worker(served.worker_metrics_dir, "/predict")
        rollout.start(client, name, second, "shadow", 1.0, first)
        time.sleep(3)  # both workers poll twice a second
        shadowed = [
            httpx.post(f"{base_url}/predict", json=EXAMPLE_PAYLOAD).json()["prediction_id"]
            for _ in range(40)
        ]

    assert len(spread) == WORKERS and all(
        spread[pid] > spread_before.get(pid, 0) for pid in spread
    )  # both workers answered callers in the two passes
    assert once == again
    assert set(once.values()) == {first, second}
    shadows = {row["prediction_id"]: row for row in shadow_rows(served)}
    assert set(shadowed) <= set(shadows)
    assert {shadows[pid]["model_version"] for pid in shadowed} == {second}
