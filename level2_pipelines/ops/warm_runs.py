"""Runs in the warm worker (`ops/warm.py`): the task it runs, and the client side that submits one
(`make level2`, the incoming-folder watcher) and waits for its end.

`make level2` and the watcher submit `warm_training` with `warm_training.delay(...)`, which
records a scheduled task run on the Prefect server; the worker receives it over its
subscription. Parameters and results travel through Prefect's result storage under
PREFECT_HOME, which both sides share on this machine. The task run and the flow run it calls
both show in the Prefect UI. A worker that dies during a run is reported, never waited on for
ever: its supervisor marks the run Crashed, and a client whose worker is gone says so.
"""

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prefect import tags, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.settings import get_current_settings
from prefect.states import State

from level2_pipelines.ops.local_servers import running, warm_worker
from level2_pipelines.settings import Settings

RUN_FILE = "warm-run.json"  # the task run the worker is in, and its pid
WAIT_LIMIT_S = 30 * 60  # a client gives up on a run that neither ends nor crashes


class WarmRunLost(RuntimeError):
    """The warm worker died, or was stopped, before the run ended; the message says which."""


@dataclass
class WarmResult:
    """What the worker sends back: the lines `make level2` prints, or the error a cold run would
    exit with. Plain values only, so the client reads them without importing the pipeline."""

    lines: list[str]
    error: str | None
    worker_pid: int
    flow_run_id: str | None


@dataclass
class Worker:
    pid: int
    supervisor_pid: int


def servers_dir(settings: Settings) -> Path:
    return settings.state_dir / "servers"


def run_environment() -> dict[str, str]:
    """What a run depends on besides its parameters: the LEVEL2_ settings (hashed: one is a
    token) and where Prefect keeps parameters and results. Client and worker must agree."""
    level2 = {k: v for k, v in os.environ.items() if k.startswith("LEVEL2_")}
    results = str(get_current_settings().results.local_storage_path)
    return {
        k: hashlib.sha256(v.encode()).hexdigest()[:16]
        for k, v in [*sorted(level2.items()), ("prefect results", results)]
    }


def ready_worker(settings: Settings) -> tuple[Worker | None, str]:
    """The warm worker, if it is ready to run this process's run; else None and why not ("" if
    there is none: nothing to explain, runs happen as they did before it)."""
    supervisor = running(settings, "warm")
    if supervisor is None:
        return None, ""
    found = warm_worker(settings)
    if found is None:
        return None, "the warm worker is starting (importing its libraries)"
    ours, theirs = run_environment(), found.get("environment", {})
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    if differ:
        return None, f"the warm worker was started with other settings ({', '.join(differ)})"
    return Worker(found["pid"], supervisor), ""


# --- The task the worker runs ---------------------------------------------------------------


@task(name="penguins-training-warm", cache_policy=NO_CACHE)
def warm_training(
    batch_path: str | None = None,
    approval: str | None = None,
    simulate_rows: int | None = None,
    incoming_name: str | None = None,
    force: bool = False,
    drift_run_id: str | None = None,
) -> WarmResult:
    """Run the training flow in this (warm) process. Its flow run is tagged with this task run,
    so the supervisor can find it and mark it crashed too if the process dies."""
    # Imported at the worker's start already: these cost nothing here.
    from level2_pipelines.outcome import expected_failures, report_lines
    from level2_pipelines.pipeline import training_pipeline

    settings = Settings()
    task_run_id = str(TaskRunContext.get().task_run.id)
    in_run = servers_dir(settings) / RUN_FILE
    in_run.write_text(json.dumps({"task_run_id": task_run_id, "pid": os.getpid()}))
    try:
        start = time.perf_counter()
        with tags(f"warm-task-run:{task_run_id}"):
            state = training_pipeline(
                batch_path,
                approval,
                simulate_rows,
                incoming_name,
                force,
                drift_run_id,
                return_state=True,
            )
        seconds = time.perf_counter() - start
        flow_run_id = str(state.state_details.flow_run_id)
        try:
            outcome = state.result()
        except expected_failures() as error:
            return WarmResult([], f"level 2: {error}", os.getpid(), flow_run_id)
        return WarmResult(report_lines(outcome, settings, seconds), None, os.getpid(), flow_run_id)
    finally:
        in_run.unlink(missing_ok=True)


# --- The client side: `make level2` and the watcher -------------------------------------------


def run_in_worker(settings: Settings, **parameters) -> WarmResult:
    """Submit one run to the warm worker and wait for its end. Raises WarmRunLost, at once, if
    the worker died during it (the supervisor marks it Crashed) or everything was stopped."""
    future = warm_training.delay(**parameters)
    started = time.monotonic()
    while True:
        state = state_after_a_wait(future)
        if state is not None and state.is_final():
            break
        if running(settings, "warm") is None:  # `make level2-down`, or the supervisor killed
            message = "the warm worker stopped before this run ended"
            with contextlib.suppress(Exception):  # the Prefect server may be stopping too
                mark_crashed(str(future.task_run_id), message)
            raise WarmRunLost(f"{message} (task run {future.task_run_id})")
        if time.monotonic() - started > WAIT_LIMIT_S:
            raise WarmRunLost(f"no end after {WAIT_LIMIT_S:.0f} s (task run {future.task_run_id})")
    if state.is_completed():
        return future.result()
    raise WarmRunLost(f"task run {future.task_run_id} {state.name}: {state.message}")


def state_after_a_wait(future) -> State | None:
    """The run's state after waiting up to a second for its end; None while the task run has
    no state yet (submitted, not yet taken: a worker that restarts takes a few seconds), which
    Prefect's `wait` reports by raising."""
    try:
        future.wait(timeout=1.0)  # returns as soon as the run reaches a final state
    except RuntimeError:  # "Task run ... has no state which means it hasn't started yet."
        time.sleep(1.0)
        return None
    return future.state


def mark_crashed(task_run_id: str, message: str) -> None:
    """Mark a task run, and the flow run it called, Crashed: nobody else would, and the UI
    would show them running for ever."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_task_run_state(UUID(task_run_id), Crashed(message=message), force=True)
        tagged = FlowRunFilter(tags=FlowRunFilterTags(all_=[f"warm-task-run:{task_run_id}"]))
        for flow_run in client.read_flow_runs(flow_run_filter=tagged):
            if flow_run.state is None or not flow_run.state.is_final():
                client.set_flow_run_state(flow_run.id, Crashed(message=message), force=True)
