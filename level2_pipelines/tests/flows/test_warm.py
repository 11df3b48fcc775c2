"""The warm worker (`make level2-up`): a run goes to a long-lived process that has the pipeline
imported and is recorded in Prefect; without a ready worker `make level2` runs as before; a
worker that dies during a run is reported at once, its runs marked Crashed, and it comes back.

One real supervisor and worker for the module, on the session's Prefect harness; one full
pipeline run, and one run cut short by SIGKILL."""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace
from uuid import UUID

import pytest
from mlflow import MlflowClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import get_current_settings

from level2_pipelines import pipeline_cli, registry, triggers, watcher
from level2_pipelines.ops import warm_runs
from level2_pipelines.ops.local_servers import warm_worker
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

# What the worker is started with, and each test here sets too: client and worker must agree.
WARM_ENV = {
    "LEVEL2_MODEL_NAME": "penguins-warm",
    "LEVEL2_PORT": "1",  # no service: deploy reports "not running"
    "LEVEL2_ADMIN_TOKEN": "a-test-token-nobody-guesses",
}
READY_TIMEOUT_S = 180.0


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.1)
    return found


@pytest.fixture(scope="module")
def supervisor(state_dir):
    """`python -m level2_pipelines.ops.warm` as `make level2-up` starts it, with its pid file."""
    settings = Settings()
    servers = settings.state_dir / "servers"
    servers.mkdir(parents=True, exist_ok=True)
    api_url = get_current_settings().api.url
    with (servers / "warm.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "level2_pipelines.ops.warm", "--api", api_url],
            env=os.environ | WARM_ENV,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (servers / "warm.pid").write_text(str(process.pid))
    try:
        wait_for(lambda: warm_worker(settings), READY_TIMEOUT_S, "warm worker ready")
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        (servers / "warm.pid").unlink(missing_ok=True)


@pytest.fixture
def settings(state_dir, monkeypatch) -> Settings:
    """This process's settings, the ones the worker was started with."""
    for name, value in WARM_ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    connect(settings)
    return settings


def flow_runs_of(task_run_id: str):
    tagged = FlowRunFilter(tags=FlowRunFilterTags(all_=[f"warm-task-run:{task_run_id}"]))
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=tagged)


def test_a_run_goes_to_the_warm_worker_and_is_recorded_in_prefect(supervisor, settings):
    """The run happens in the worker's process, not this one; its flow run is in Prefect, and
    is the one the registry version records."""
    worker, why_not = warm_runs.ready_worker(settings)
    assert worker is not None, why_not

    result = warm_runs.run_in_worker(settings, force=True)

    assert result.error is None
    assert result.worker_pid == worker.pid != os.getpid()
    assert f"{settings.model_name} v1 is now champion" in "\n".join(result.lines)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(result.flow_run_id))
    assert flow_run.state.is_completed()
    assert any(tag.startswith("warm-task-run:") for tag in flow_run.tags)
    champion = registry.version_by_alias(MlflowClient(), settings.model_name, registry.CHAMPION)
    assert champion.tags["flow_run_id"] == result.flow_run_id


def test_make_level2_runs_here_when_no_worker_can_take_the_run(
    supervisor, settings, monkeypatch, tmp_path, capsys
):
    """No worker (another state folder): `run_warm` leaves the run to this process and says
    nothing, as before the warm worker; one started with other settings: it says why."""
    args = argparse.Namespace(batch=None, approval=None, simulate=None, force=False)
    elsewhere = Settings(state_dir=tmp_path)
    assert pipeline_cli.run_warm(args, elsewhere, "http://127.0.0.1:1/api") is False
    monkeypatch.setenv("LEVEL2_APPROVAL", "manual")
    assert pipeline_cli.run_warm(args, settings, "http://127.0.0.1:1/api") is False

    said = capsys.readouterr().out.splitlines()
    assert said == [
        "level 2: the warm worker was started with other settings (LEVEL2_APPROVAL); "
        "running in this process",
    ]


def test_a_landed_batch_goes_to_the_warm_worker_when_it_is_ready(monkeypatch):
    """The watcher hands a landed file to the warm worker and labels its event so the
    on-new-data trigger leaves it alone; without a worker the event is the trigger's."""
    events, delayed = [], []
    monkeypatch.setattr(watcher, "emit_event", lambda **event: events.append(event))
    monkeypatch.setattr(
        warm_runs.warm_training,
        "delay",
        lambda **parameters: delayed.append(parameters) or SimpleNamespace(task_run_id="t-1"),
    )
    monkeypatch.setattr(warm_runs, "ready_worker", lambda settings: (None, "none"))
    watcher.hand_over("a.csv", "0" * 64)
    monkeypatch.setattr(warm_runs, "ready_worker", lambda settings: (warm_runs.Worker(7, 8), ""))
    taken_by = watcher.hand_over("b.csv", "1" * 64).taken_by

    trigger = {d.name: d for d in triggers.deployments(Settings())}["on-new-data"].triggers[0]
    assert [e["resource"][watcher.ROUTE] for e in events] == ["deployment", "warm-worker"]
    assert trigger.match.root == {watcher.ROUTE: "deployment"}
    assert delayed == [{"incoming_name": "b.csv"}]
    assert events[1]["related"][0]["prefect.resource.id"] == "prefect.task-run.t-1"
    assert "warm worker (pid 7)" in taken_by


def test_a_worker_killed_during_a_run_is_reported_and_comes_back(supervisor, settings):
    """SIGKILL on the worker mid-run: the waiting client is told at once (not at a timeout),
    the task run and its flow run are marked Crashed, and a new worker gets ready."""
    killed = warm_worker(settings)["pid"]
    outcome = {}

    def client() -> None:
        try:
            warm_runs.run_in_worker(settings, simulate_rows=300, force=True)
        except warm_runs.WarmRunLost as error:
            outcome["lost"] = (str(error), time.monotonic())

    waiting = threading.Thread(target=client)
    waiting.start()
    in_run = settings.state_dir / "servers" / warm_runs.RUN_FILE
    task_run_id = wait_for(
        lambda: in_run.exists() and json.loads(in_run.read_text())["task_run_id"], 60, "a run"
    )
    wait_for(lambda: flow_runs_of(task_run_id), 60, "its flow run")
    os.kill(killed, signal.SIGKILL)
    at = time.monotonic()
    waiting.join(timeout=60)

    message, when = outcome["lost"]
    assert "ended unasked (killed by SIGKILL) during this run" in message
    # "At once": long before the client's own limit (warm_runs.WAIT_LIMIT_S, 30 minutes); the
    # supervisor's report takes seconds on two busy cores, so the bound leaves it room.
    assert when - at < 60
    with get_client(sync_client=True) as prefect:
        assert prefect.read_task_run(UUID(task_run_id)).state.is_crashed()
    assert all(flow_run.state.is_crashed() for flow_run in flow_runs_of(task_run_id))
    # Back: a new worker process, started as the first one was (whose readiness the fixture
    # saw); waiting for it to import everything again would cost the suite ~15 s more.
    log = settings.state_dir / "servers" / "warm.log"
    wait_for(lambda: worker_pids(log)[-1] != killed, 60, "a new worker")
    os.kill(worker_pids(log)[-1], 0)  # alive
    assert f"worker (pid {killed}) ended unasked (killed by SIGKILL)" in log.read_text()


def worker_pids(log) -> list[int]:
    """The workers the supervisor says it started, in order."""
    return [int(pid) for pid in re.findall(r"worker started \(pid (\d+)\)", log.read_text())]
