"""The warm worker says it is ready (writes warm-worker.json, which clients read) only once the
Prefect server lists it among the workers subscribed to its task: a worker whose subscription is
refused never looks ready, so no client sends it a run it would never take."""

import json
import os
import socket
import threading

import httpx
import pytest

from level2_pipelines.ops import warm
from level2_pipelines.ops.local_servers import WARM_WORKER_FILE
from level2_pipelines.settings import Settings

TASK_KEY = "warm_training-abc123"
ME = f"{socket.gethostname()}-{os.getpid()}"


class FakeApi:
    """POST /task_workers/filter as the Prefect server answers it: the workers it lists."""

    def __init__(self, answers: list) -> None:
        self.answers, self.asked = answers, []

    def post(self, url: str, json: dict, timeout: float) -> httpx.Response:
        self.asked.append((url, json))
        answer = self.answers[min(len(self.asked), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(200, json=answer, request=httpx.Request("POST", url))


@pytest.fixture
def settings(tmp_path) -> Settings:
    (tmp_path / "servers").mkdir()
    return Settings(state_dir=tmp_path)


def announce(settings, api: FakeApi, monkeypatch, stop: threading.Event | None = None) -> bool:
    monkeypatch.setattr(warm.httpx, "post", api.post)
    found = {"pid": os.getpid(), "environment": {}}
    stop = stop or threading.Event()
    return warm.announce_when_subscribed(
        settings, "http://127.0.0.1:1/api", TASK_KEY, found, stop, poll_s=0.01
    )


def test_ready_is_written_once_the_server_lists_this_worker(settings, monkeypatch):
    """Refused, unreachable, another worker, then this one: ready only at the last answer."""
    api = FakeApi(
        [
            httpx.ConnectError("refused"),
            [],
            [{"identifier": "elsewhere-1", "task_keys": [TASK_KEY]}],
            [{"identifier": ME, "task_keys": [TASK_KEY]}],
        ]
    )

    assert announce(settings, api, monkeypatch) is True

    assert len(api.asked) == 4
    assert api.asked[0] == (
        "http://127.0.0.1:1/api/task_workers/filter",
        {"task_worker_filter": {"task_keys": [TASK_KEY]}},
    )
    ready = json.loads((settings.state_dir / "servers" / WARM_WORKER_FILE).read_text())
    assert ready["pid"] == os.getpid()


def test_a_worker_never_subscribed_never_says_it_is_ready(settings, monkeypatch):
    """The server never lists it (its subscription was refused): when serving ends, nothing
    was written, and clients keep running in their own process."""
    stop = threading.Event()
    api = FakeApi([[]])
    threading.Timer(0.3, stop.set).start()

    assert announce(settings, api, monkeypatch, stop) is False

    assert len(api.asked) > 3
    assert not (settings.state_dir / "servers" / WARM_WORKER_FILE).exists()


def test_state_after_a_wait_is_none_while_the_task_run_has_no_state():
    """Prefect's `wait` raises for a task run not yet given a state (submitted, not yet taken):
    the client waits on instead of dying with it."""
    from level2_pipelines.ops.warm_runs import state_after_a_wait

    class NotStartedYet:
        state = "never read"

        def wait(self, timeout):
            raise RuntimeError("Task run 1 has no state which means it hasn't started yet.")

    class Finished:
        state = "Completed"

        def wait(self, timeout):
            return None

    assert state_after_a_wait(NotStartedYet()) is None
    assert state_after_a_wait(Finished()) == "Completed"
