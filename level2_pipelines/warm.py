"""A warm level 2: with `make level2-up` running, runs execute in a long-lived process that has
GX, MLflow and scikit-learn imported already, so `make level2` and a batch landing in
`incoming/` wait for the flow, not for a fresh process's imports (~10-15 s on 2 cores).

    python -m level2_pipelines.warm --api URL      (`make level2-up` starts it)

The mechanism is Prefect's own: a task worker (`prefect.task_worker.serve`) runs
`warm_training`, a task that calls the training flow in its process; `make level2` and the
incoming-folder watcher submit it with `warm_training.delay(...)`, which records a scheduled task
run on the Prefect server, and the worker receives it over its subscription. Parameters and
results travel through Prefect's result storage under PREFECT_HOME, which both sides share on
this machine. Prefect's `serve()` cannot do this: its runner starts a new process for every
flow run (Prefect 3.9 has no in-process switch), and those imports are the cost removed here.
The task run and the flow run it calls both show in the Prefect UI.

One run at a time in the worker (limit=1, later ones wait as scheduled task runs); across
processes (the nightly deployment, a cold `make level2`) the pipeline's decision lock still
keeps one decision at a time.

Crash isolation. Prefect's runner gives every run its own process, so a crash there (a segfault
in a native library, the OOM killer, SIGKILL) takes one run; here it would take the worker. So
this entry point is a small supervisor (no GX, MLflow or scikit-learn in it) that starts the
worker as its child and, when the worker dies unasked, marks the run it was in Crashed in
Prefect (as Prefect's runner does when a flow run's process dies), says so in its log and starts
a new worker. A waiting client sees the Crashed state at once, or sees the supervisor gone if
everything was stopped: a crash is reported, never a hang.

Its files, in state/level2/servers/: `warm.pid` and `warm.log` (kept by local_servers),
`warm-worker.json` (the worker's pid and what it was started with, written once the Prefect
server lists it subscribed: its "ready")
and `warm-run.json` (the task run the worker is in).
"""

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
from prefect import tags, task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from level2_pipelines.local_servers import WARM_WORKER_FILE, running, warm_worker
from level2_pipelines.settings import Settings

RUN_FILE = "warm-run.json"
WAIT_LIMIT_S = 30 * 60  # a client gives up on a run that neither ends nor crashes
RESTART_DELAYS_S = (1, 2, 5, 10, 30)  # a worker dying again and again is restarted ever slower
LIVED_LONG_S = 60.0  # a worker that lived this long starts the delays over


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


def fingerprint() -> dict[str, str]:
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
    ours, theirs = fingerprint(), found.get("fingerprint", {})
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
    from level2_pipelines.pipeline import (
        BatchRejected,
        UnsafeBatchName,
        report_lines,
        training_pipeline,
    )
    from level2_pipelines.registry import RegistryError

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
        except (BatchRejected, RegistryError, UnsafeBatchName) as error:
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
        future.wait(timeout=1.0)  # returns as soon as the run reaches a final state
        state = future.state
        if state.is_final():
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


# --- The worker and its supervisor ------------------------------------------------------------


def work(settings: Settings) -> None:
    """The worker: import the pipeline once, then run `warm_training` runs as they come."""
    from prefect.task_worker import serve

    import level2_pipelines.pipeline  # noqa: F401  the point of this process: GX, MLflow, sklearn

    # The task as `level2_pipelines.warm` defines it, not as `__main__` (this file run with -m):
    # its results must unpickle in the client under that name.
    from level2_pipelines.warm import warm_training as task_to_serve

    found = {"pid": os.getpid(), "fingerprint": fingerprint()}
    # Ready once the server has it subscribed, not before: a worker whose subscription is
    # refused would otherwise be sent runs it never takes, and their clients would wait.
    serving = threading.Event()
    announce = threading.Thread(
        target=announce_when_subscribed,
        args=(settings, str(PREFECT_API_URL.value()), task_to_serve.task_key, found, serving),
        daemon=True,
    )
    announce.start()
    try:
        serve(task_to_serve, limit=1)
    finally:
        serving.set()


def announce_when_subscribed(
    settings: Settings,
    api_url: str,
    task_key: str,
    found: dict,
    stop: threading.Event,
    poll_s: float = 0.2,
) -> bool:
    """Write `warm-worker.json` (what clients read as "ready") once the Prefect server lists
    this process among the task workers subscribed to `task_key`; False if `stop` came first.
    The server names a task worker "<host>-<pid>" (Prefect's TaskWorker.client_id)."""
    me = f"{socket.gethostname()}-{os.getpid()}"
    query = {"task_worker_filter": {"task_keys": [task_key]}}
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError, ValueError, TypeError, KeyError):
            listed = httpx.post(f"{api_url}/task_workers/filter", json=query, timeout=5).json()
            if any(worker["identifier"] == me for worker in listed):
                (servers_dir(settings) / WARM_WORKER_FILE).write_text(json.dumps(found))
                say(f"warm worker ready (pid {os.getpid()})")
                return True
        stop.wait(poll_s)
    return False


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} level 2 warm: {message}", flush=True)


def supervise(settings: Settings, api_url: str) -> None:
    """Keep one worker running; when it dies unasked, report its run crashed and restart it."""
    servers_dir(settings).mkdir(parents=True, exist_ok=True)
    # A task run outside a flow run cannot send its logs to the API (its flow run's can):
    # Prefect warns on every run unless told to let them go to the log file only.
    environment = os.environ | {
        "PREFECT_API_URL": api_url,
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    }
    command = [sys.executable, "-m", "level2_pipelines.warm", "--worker"]
    child: subprocess.Popen | None = None
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # its group got it too, unless only we were sent it

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delays = iter(RESTART_DELAYS_S)
    while not stopping:
        born = time.monotonic()
        child = subprocess.Popen(command, env=environment)
        say(f"worker started (pid {child.pid}); importing the pipeline's libraries")
        code = child.wait()
        (servers_dir(settings) / WARM_WORKER_FILE).unlink(missing_ok=True)
        cause = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if not stopping:
            say(f"worker (pid {child.pid}) died unasked ({cause})")
        lost = lost_run(settings, child.pid)
        if lost is not None:
            message = (
                f"the warm worker (pid {child.pid}) was stopped during this run"
                if stopping
                else f"the warm worker (pid {child.pid}) died during this run ({cause}); "
                f"it is restarted; see {servers_dir(settings) / 'warm.log'}"
            )
            try:
                with temporary_settings({PREFECT_API_URL: api_url}):
                    mark_crashed(lost, message)
                say(f"task run {lost} marked Crashed")
            except Exception as error:  # the server may be gone too; the log still says it
                say(f"could not mark task run {lost} Crashed: {error}")
        if stopping:
            break
        if time.monotonic() - born > LIVED_LONG_S:
            delays = iter(RESTART_DELAYS_S)
        delay = next(delays, RESTART_DELAYS_S[-1])
        say(f"restarting the worker in {delay} s")
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    say("stopped")


def lost_run(settings: Settings, pid: int) -> str | None:
    """The task run the dead worker `pid` was in, if any."""
    path = servers_dir(settings) / RUN_FILE
    try:
        found = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return found["task_run_id"] if found.get("pid") == pid else None


def main() -> None:
    parser = argparse.ArgumentParser(description="The warm level 2 worker and its supervisor.")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--api", help="supervise a worker on this Prefect API (level2-up does)")
    role.add_argument("--worker", action="store_true", help="be the worker (the supervisor's)")
    args = parser.parse_args()
    settings = Settings()
    if args.worker:
        work(settings)
    else:
        supervise(settings, args.api)


if __name__ == "__main__":
    main()
