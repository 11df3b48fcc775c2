"""A warm level 2: with `make level2-up` running, runs execute in a long-lived process that has
GX, MLflow and scikit-learn imported already, so `make level2` and a batch landing in
`incoming/` wait for the flow, not for a fresh process's imports (~10-15 s on 2 cores).

    python -m level2_pipelines.ops.warm --api URL      (`make level2-up` starts it)

The mechanism is Prefect's own: a task worker (`prefect.task_worker.serve`) runs
`warm_training`, a task that calls the training flow in its process (`warm_runs.py` holds it
and the client side that submits runs to it). Prefect's `serve()` cannot do this: its runner
starts a new process for every flow run (Prefect 3.9 has no in-process switch), and those
imports are the cost removed here.

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
import json
import os
import socket
import sys
import threading
import time

import httpx
from prefect.settings import PREFECT_API_URL, temporary_settings

from level2_pipelines.ops.local_servers import WARM_WORKER_FILE
from level2_pipelines.ops.processes import keep
from level2_pipelines.ops.warm_runs import RUN_FILE, mark_crashed, run_environment, servers_dir
from level2_pipelines.settings import Settings


def work(settings: Settings) -> None:
    """The worker: import the pipeline once, then run `warm_training` runs as they come."""
    from prefect.task_worker import serve

    import level2_pipelines.pipeline  # noqa: F401  the point of this process: GX, MLflow, sklearn
    from level2_pipelines.ops.warm_runs import warm_training

    found = {"pid": os.getpid(), "environment": run_environment()}
    # Ready once the server has it subscribed, not before: a worker whose subscription is
    # refused would otherwise be sent runs it never takes, and their clients would wait.
    serving = threading.Event()
    announce = threading.Thread(
        target=announce_when_subscribed,
        args=(settings, str(PREFECT_API_URL.value()), warm_training.task_key, found, serving),
        daemon=True,
    )
    announce.start()
    try:
        serve(warm_training, limit=1)
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
    command = [sys.executable, "-m", "level2_pipelines.ops.warm", "--worker"]

    def after_exit(pid: int, why: str, stopping: bool) -> None:
        """The dead worker is no longer ready; the task run it was in is marked Crashed."""
        (servers_dir(settings) / WARM_WORKER_FILE).unlink(missing_ok=True)
        lost = lost_run(settings, pid)
        if lost is None:
            return
        message = (
            f"the warm worker (pid {pid}) was stopped during this run"
            if stopping
            else f"the warm worker (pid {pid}) {why} during this run; "
            f"it is restarted; see {servers_dir(settings) / 'warm.log'}"
        )
        try:
            with temporary_settings({PREFECT_API_URL: api_url}):
                mark_crashed(lost, message)
            say(f"task run {lost} marked Crashed")
        except Exception as error:  # the server may be gone too; the log still says it
            say(f"could not mark task run {lost} Crashed: {error}")

    keep(command, name="worker", env=environment, after_exit=after_exit, tell=say)


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
