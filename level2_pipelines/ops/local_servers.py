"""The workshop's local servers, so people can watch runs: `make level2-up` / `make level2-down`.

- the Prefect server and UI at http://127.0.0.1:4200 (its own SQLite database in PREFECT_HOME);
- the MLflow UI at http://127.0.0.1:5000, over the same SQLite store the pipeline writes;
- the warm worker (`level2_pipelines.ops.warm`): a long-lived process with the pipeline
  imported, which runs `make level2` and landed batches; its supervisor restarts it if it dies;
- the trigger runner (`level2_pipelines.triggers`): schedule, new-data and drift triggers, and
  the incoming watcher; a small supervisor restarts it if it dies or its watcher stops beating.

Each runs in the background with its log and pid under state/level2/servers/ (`processes.py`
says why not Prefect's own background mode). The pipeline works with them up or not; with them
up its runs appear in both UIs.

    python -m level2_pipelines.ops.local_servers up | down | status
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx

from level2_pipelines.ops.processes import (
    MLFLOW_SERVER_ENV,
    START_TIMEOUT_S,
    Processes,
    heartbeat_problem,
    kept_alive,
    mlflow_server,
    prefect_server,
)
from level2_pipelines.settings import Settings

WARM_WORKER_FILE = "warm-worker.json"  # written by the warm worker once it is ready


def local_prefect_server(settings: Settings) -> str | None:
    """The URL of the workshop's Prefect server (`make level2-up`) if it answers."""
    try:
        httpx.get(f"{settings.prefect_api_url}/health", timeout=0.5).raise_for_status()
    except httpx.HTTPError:
        return None
    return settings.prefect_api_url


def commands(settings: Settings) -> dict[str, tuple[list[str], str]]:
    """name -> (command, URL that answers when it is up)."""
    return {
        "prefect": (prefect_server(settings.prefect_port), f"{settings.prefect_api_url}/health"),
        "mlflow": (
            mlflow_server(
                settings.mlflow_ui_port,
                "--backend-store-uri",
                settings.resolved_tracking_uri,
                "--default-artifact-root",
                settings.mlflow_artifacts_dir.resolve().as_uri(),
            ),
            f"http://127.0.0.1:{settings.mlflow_ui_port}/health",
        ),
        # No URL: it is ready once its worker says so (`warm_worker`), waited for last.
        "warm": (
            [sys.executable, "-m", "level2_pipelines.ops.warm", "--api", settings.prefect_api_url],
            None,
        ),
        # Kept alive: restarted when it dies, or when its incoming watcher stops beating.
        "deployments": (
            kept_alive(
                [sys.executable, "-m", "level2_pipelines.triggers"], watcher_heartbeat(settings)
            ),
            None,
        ),
    }


def processes(settings: Settings) -> Processes:
    return Processes(settings.state_dir / "servers")


def running(settings: Settings, name: str) -> int | None:
    return processes(settings).running(name)


def up(settings: Settings) -> None:
    keeper = processes(settings)
    if not running(settings, "deployments"):
        # A heartbeat left by an earlier watcher would read as this one's, dead since then.
        watcher_heartbeat(settings).unlink(missing_ok=True)
    env = os.environ | MLFLOW_SERVER_ENV
    for name, (command, health) in commands(settings).items():
        keeper.start(name, command, health=health, env=env)
    # The warm worker imports GX, MLflow and scikit-learn (~10-15 s): waited for last, while
    # the others start, so the first `make level2` after this finds it ready.
    deadline = time.monotonic() + START_TIMEOUT_S
    while warm_worker(settings) is None:
        if not running(settings, "warm") or time.monotonic() > deadline:
            sys.exit(f"warm: the worker did not get ready; see {keeper.directory}")
        time.sleep(0.5)
    print(f"warm: worker ready (pid {warm_worker(settings)['pid']})")
    print(f"Prefect UI: http://127.0.0.1:{settings.prefect_port}")
    print(f"MLflow UI:  http://127.0.0.1:{settings.mlflow_ui_port}")
    print(f"Drop a batch into {settings.incoming_dir} to start a run.")


def down(settings: Settings) -> None:
    keeper = processes(settings)
    for name in reversed(commands(settings)):
        keeper.stop(name)


def warm_worker(settings: Settings) -> dict | None:
    """What the warm worker wrote once ready (its pid, what it was started with), if it lives."""
    try:
        found = json.loads((settings.state_dir / "servers" / WARM_WORKER_FILE).read_text())
        os.kill(found["pid"], 0)
    except (FileNotFoundError, ProcessLookupError, ValueError, KeyError):
        return None
    return found


def watcher_heartbeat(settings: Settings) -> Path:
    """Where the incoming watcher (in the deployments process) writes its heartbeat."""
    return settings.state_dir / "servers" / "watcher.json"


def status(settings: Settings) -> None:
    """What runs; exits 1 when the incoming watcher does not watch although its process runs
    (a landed batch would wait there unseen)."""
    dead_watcher = None
    for name in commands(settings):
        pid = running(settings, name)
        print(f"{name}: {f'running (pid {pid})' if pid else 'not running'}", end="")
        if name == "warm" and pid:
            worker = warm_worker(settings)
            state = f"ready (pid {worker['pid']})" if worker else "starting"
            print(f", worker {state}", end="")
        if name == "deployments" and pid:
            if not watcher_heartbeat(settings).exists():  # `up` removed the last one's
                print(", incoming watcher starting", end="")
            elif dead_watcher := heartbeat_problem(watcher_heartbeat(settings)):
                print(f", incoming watcher NOT WATCHING: {dead_watcher}", end="")
            else:
                print(", incoming watcher watching", end="")
        print()
    if dead_watcher:
        sys.exit(
            f"level 2: the incoming watcher is not watching ({dead_watcher}); "
            "its supervisor restarts it once its beat is 2 minutes old (`make level2-down "
            "level2-up` if it stays so); its log is deployments.log"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Start or stop the workshop's local servers.")
    parser.add_argument("action", choices=["up", "down", "status"])
    action = {"up": up, "down": down, "status": status}[parser.parse_args().action]
    action(Settings())


if __name__ == "__main__":
    main()
