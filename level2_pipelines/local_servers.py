"""The workshop's local servers, so people can watch runs: `make level2-up` / `make level2-down`.

- the Prefect server and UI at http://127.0.0.1:4200 (its own SQLite database in PREFECT_HOME);
- the MLflow UI at http://127.0.0.1:5000, over the same SQLite store the pipeline writes;
- the warm worker (`level2_pipelines.warm`): a long-lived process with the pipeline imported,
  which runs `make level2` and landed batches; its supervisor restarts it if it dies;
- the deployments runner (`level2_pipelines.deployments`): schedule and new-data trigger.

Each runs in the background with its log and pid under state/level2/servers/. The pipeline
works with them up or not; with them up its runs appear in both UIs.

Why not `prefect server start --background` / `prefect server stop` (Prefect 3.9): the
background server's output goes to pipes nobody reads, so a chatty server stalls once 64 KiB
of log fill them, and nothing is kept to read when it fails; `stop` sends one SIGTERM to one
pid and neither waits nor escalates. Here every server gets a log file, its own process group
(its workers stop with it) and a stop that waits, then kills what is left. MLflow and the
deployments runner have no background mode of their own, so the same code serves all three.

    python -m level2_pipelines.local_servers up | down | status
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from level2_pipelines.settings import Settings

START_TIMEOUT_S = 120.0
WARM_WORKER_FILE = "warm-worker.json"  # written by the warm worker once it is ready


BIN_DIR = Path(sys.executable).parent
# MLflow's job runner (GenAI features, unused here) would be 8 more processes, ~0.8 GB.
MLFLOW_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def prefect_server(port: int) -> list[str]:
    """A Prefect server and UI on loopback; its database comes from PREFECT_SERVER_DATABASE_*
    (default: SQLite in PREFECT_HOME)."""
    return [str(BIN_DIR / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def mlflow_server(port: int, *store: str) -> list[str]:
    """An MLflow server and UI on loopback; `store`: its options saying where runs and
    artifacts go (or none: MLFLOW_BACKEND_STORE_URI and the like in its environment)."""
    return [
        str(BIN_DIR / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *store,
        # One worker. With its default 4, uvicorn kills a worker that has not answered its
        # health check within 5 s, which on a busy 2-core machine is every worker still
        # importing MLflow: the server never came up.
        "--workers",
        "1",
    ]


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
            [sys.executable, "-m", "level2_pipelines.warm", "--api", settings.prefect_api_url],
            None,
        ),
        "deployments": ([sys.executable, "-m", "level2_pipelines.deployments"], None),
    }


class Processes:
    """Background processes, each in its own process group with its pid and log file in one
    folder: started once, waited for until their health URL answers, stopped as a group with
    a wait, then a kill for what is left. `make level2-up` and team mode (`team.py`) use it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def pid_file(self, name: str) -> Path:
        return self.directory / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    def running(self, name: str) -> int | None:
        path = self.pid_file(name)
        if not path.exists():
            return None
        pid = int(path.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink()
            return None
        return pid

    def start(
        self,
        name: str,
        command: list[str],
        *,
        health: str | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start `command` unless it runs; wait for `health` to answer 200. Returns its pid."""
        pid = self.running(name)
        if pid is not None:
            print(f"{name}: already running (pid {pid})")
            return pid
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.log_file(name)
        with log.open("ab") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd=cwd,
            )
        self.pid_file(name).write_text(str(process.pid))
        deadline = time.monotonic() + START_TIMEOUT_S
        while health and not answers(health):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop(name, quiet=True)
                sys.exit(f"{name}: did not start; see {log}")
            time.sleep(0.5)
        print(f"{name}: up (pid {process.pid}, log {log})")
        return process.pid

    def stop(self, name: str, *, quiet: bool = False) -> None:
        pid = self.running(name)
        if pid is None:
            if not quiet:
                print(f"{name}: not running")
            return
        started = time.monotonic()
        # The whole group: the servers start workers of their own.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        self.pid_file(name).unlink(missing_ok=True)
        if not quiet:
            print(f"{name}: stopped ({time.monotonic() - started:.1f} s)")


def processes(settings: Settings) -> Processes:
    return Processes(settings.state_dir / "servers")


def running(settings: Settings, name: str) -> int | None:
    return processes(settings).running(name)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def up(settings: Settings) -> None:
    keeper = processes(settings)
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


def status(settings: Settings) -> None:
    for name in commands(settings):
        pid = running(settings, name)
        print(f"{name}: {f'running (pid {pid})' if pid else 'not running'}", end="")
        if name == "warm" and pid:
            worker = warm_worker(settings)
            state = f"ready (pid {worker['pid']})" if worker else "starting"
            print(f", worker {state}", end="")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description="Start or stop the workshop's local servers.")
    parser.add_argument("action", choices=["up", "down", "status"])
    action = {"up": up, "down": down, "status": status}[parser.parse_args().action]
    action(Settings())


if __name__ == "__main__":
    main()
