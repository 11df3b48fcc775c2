"""Promotion under load: the running service swaps to the new champion without a restart,
and not one request fails or is answered by a half-loaded model meanwhile."""

import json
import threading
import time

import httpx
import pytest
from mlflow import MlflowClient

from level2_pipelines import registry
from level2_pipelines.tests.helpers import add_version
from shared.contract import EXAMPLE_PAYLOAD
from shared.loadgen import run_load
from shared.servers import free_port, running_server

LOAD_SECONDS = 4.0  # long enough for the swap (a 0.2 s poll and one model load) to land inside it
PROMOTE_AFTER_S = 1.0


@pytest.mark.slow
def test_promotion_under_load_drops_nothing(settings, candidate):
    """Approving a challenger while 8 connections send requests: all answered 200, and the
    service moves from the old version to the new one during the run. The versions are
    registered directly (the pipeline's own runs are tested in test_pipeline.py): what is
    under test is the swap in the service."""
    client = MlflowClient()
    old = add_version(settings, candidate)
    registry.promote(client, settings.model_name, old, registry.CHAMPION, None)
    new = add_version(settings, candidate, judged_against=old)
    registry.promote(client, settings.model_name, new, registry.CHALLENGER, old)
    port = free_port()
    env = {
        "LEVEL2_STATE_DIR": str(settings.state_dir),
        "LEVEL2_MODEL_NAME": settings.model_name,
        "LEVEL2_PORT": str(port),
        "LEVEL2_POLL_SECONDS": "0.2",
    }
    with running_server("level2_pipelines.serve", env, port, "/health") as base_url:
        assert httpx.get(f"{base_url}/ready").json()["model_version"] == old
        seen, result = [], {}

        def watch_versions() -> None:
            deadline = time.monotonic() + LOAD_SECONDS
            while time.monotonic() < deadline:
                seen.append(httpx.get(f"{base_url}/ready", timeout=5).json()["model_version"])
                time.sleep(0.05)

        def load() -> None:
            body = json.dumps(EXAMPLE_PAYLOAD).encode()
            result["load"] = run_load(port, "/predict", body, concurrency=8, seconds=LOAD_SECONDS)

        threads = [threading.Thread(target=load), threading.Thread(target=watch_versions)]
        for thread in threads:
            thread.start()
        time.sleep(PROMOTE_AFTER_S)
        registry.approve(MlflowClient(), settings.model_name)
        for thread in threads:
            thread.join()

    answered = result["load"]
    assert answered.requests > 100
    assert dict(answered.statuses) == {200: answered.requests}
    assert not answered.failures
    assert seen[0] == old and seen[-1] == new
    assert set(seen) == {old, new}
