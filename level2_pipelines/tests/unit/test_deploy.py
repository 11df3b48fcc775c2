"""The deploy stage checks what the service answers: a refused token is named, and a service
that does not confirm in time is "promoted, service not confirmed", never a failed run."""

import threading
import time

import pytest
import uvicorn

from level2_pipelines.api import ServedModel, create_app
from level2_pipelines.deploy import follow_in_service
from level2_pipelines.predict import serving_predictor
from level2_pipelines.settings import Settings
from level2_pipelines.tests.helpers import LINEAGE
from shared.servers import free_port


@pytest.fixture(scope="module")
def service(tmp_path_factory, candidate):
    """A real service on a loopback port serving v7 with the token "the-service-s-token"."""
    port = free_port()
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("deploy"), admin_token="the-service-s-token", port=port
    )
    model = ServedModel(lineage=LINEAGE, predictor=serving_predictor(candidate.pipeline))
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, model), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join()


def test_deploy_names_a_refused_token(service, tmp_path):
    """A 401 from the reload is reported as a token mismatch, even when the poll catches up."""
    settings = Settings(state_dir=tmp_path, admin_token="another-token", port=service)

    said = follow_in_service(settings, "7", timeout_s=2)

    assert said.startswith("service: http://127.0.0.1")
    assert "now serves v7" in said
    assert "refused the admin token (401)" in said


def test_deploy_that_is_not_confirmed_says_promoted_not_failed(service, tmp_path):
    """A service still on another version at the deadline: promoted, service not confirmed."""
    settings = Settings(state_dir=tmp_path, admin_token="the-service-s-token", port=service)

    said = follow_in_service(settings, "8", timeout_s=1)

    assert "promoted, service not confirmed" in said
    assert "still serves v7" in said


@pytest.mark.parametrize("token", [None, "any-token-at-all"], ids=["no-token", "token"])
def test_deploy_with_no_service_running_says_so(tmp_path, token):
    """No service at the address, with or without a token: said at once, not after a wait."""
    settings = Settings(state_dir=tmp_path, admin_token=token, port=free_port())

    assert "not running" in follow_in_service(settings, "3", timeout_s=1)
