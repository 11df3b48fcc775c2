"""Background processes for level 2's servers, each in its own process group with its pid and
log file in one folder: `make level2-up` (`local_servers.py`) and team mode (`team.py`) keep
theirs with it, and the server commands both start are written here once.

Why not `prefect server start --background` / `prefect server stop` (Prefect 3.9): the
background server's output goes to pipes nobody reads, so a chatty server stalls once 64 KiB
of log fill them, and nothing is kept to read when it fails; `stop` sends one SIGTERM to one
pid and neither waits nor escalates. Here every server gets a log file, its own process group
(its workers stop with it) and a stop that waits, then kills what is left. MLflow and the
trigger runner have no background mode of their own, so the same code serves all of them.

A process that must not stay dead (the incoming watcher) is started under `keep`, a small
supervisor in the same process group: it restarts its command when it ends unasked, or when the
heartbeat file it names stops beating (a hung loop), ever slower if it keeps dying:

    python -m level2_pipelines.ops.processes keep [--heartbeat FILE] -- COMMAND...
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

START_TIMEOUT_S = 120.0
RESTART_DELAYS_S = (1, 2, 5, 10, 30)  # something dying again and again is restarted ever slower
LIVED_LONG_S = 60.0  # one that lived this long starts the delays over
STALE_S = 30.0  # a heartbeat older than this: the loop that beats is not working
# `keep` restarts a process whose beat is this old: longer than STALE_S, as one poll may wait
# out a slow API call (Prefect's client allows 60 s), and a restart costs the process's work.
RESTART_STALE_S = 120.0
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


class Processes:
    """Background processes, each in its own process group with its pid and log file in one
    folder: started once, waited for until their health URL answers, stopped as a group with
    a wait, then a kill for what is left."""

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


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


def write_heartbeat(heartbeat: Path) -> None:
    """Say "still working" where a status command can read it: this process and the time."""
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    partial = heartbeat.with_suffix(".tmp")
    partial.write_text(json.dumps({"pid": os.getpid(), "beat": time.time()}))
    partial.replace(heartbeat)  # whole or not at all, for a reader at any moment


def heartbeat_problem(heartbeat: Path, stale_s: float = STALE_S) -> str | None:
    """Why the loop that beats is not working, from its heartbeat; None if it beat lately. A
    thread can die while its process lives on: only the beat says it works."""
    try:
        last = json.loads(heartbeat.read_text())["beat"]
    except (FileNotFoundError, ValueError, KeyError):
        return "it has not beaten yet"
    if (age := time.time() - last) > stale_s:
        return f"its last beat was {age:.0f} s ago"
    return None


class Backoff:
    """The delays before restarting something that keeps dying: longer each time, from the
    first again once it had lived LIVED_LONG_S."""

    def __init__(self, delays: tuple[float, ...] = RESTART_DELAYS_S) -> None:
        self.delays, self.next_index = delays, 0

    def delay(self, lived_s: float) -> float:
        if lived_s > LIVED_LONG_S:
            self.next_index = 0
        delay = self.delays[min(self.next_index, len(self.delays) - 1)]
        self.next_index += 1
        return delay


def kept_alive(command: list[str], heartbeat: Path | None = None) -> list[str]:
    """`command` under `keep`: restarted when it dies, or stops beating in `heartbeat`."""
    beat = ["--heartbeat", str(heartbeat)] if heartbeat is not None else []
    return [sys.executable, "-m", "level2_pipelines.ops.processes", "keep", *beat, "--", *command]


def keep(
    command: list[str],
    heartbeat: Path | None = None,
    stale_s: float = RESTART_STALE_S,
    *,
    name: str | None = None,
    env: dict[str, str] | None = None,
    after_exit: Callable[[int, str, bool], None] | None = None,
    tell: Callable[[str], None] | None = None,
) -> None:
    """Run `command` until this process is told to stop; restart it when it ends unasked or,
    once it has beaten, when its heartbeat goes stale. Says each restart and why (through
    `tell`); `after_exit(pid, what happened, stopping)` runs each time the child is gone."""
    tell = tell or say
    name = name or " ".join(Path(part).name for part in command[:3])
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # its group got it too, unless only we were sent it

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    backoff = Backoff()
    while not stopping:
        born = time.monotonic()
        child = subprocess.Popen(command, env=env)
        tell(f"{name} started (pid {child.pid})")
        why = watch_child(child, heartbeat, stale_s, lambda: stopping)
        if after_exit is not None:
            after_exit(child.pid, why, stopping)
        if stopping:
            break
        delay = backoff.delay(time.monotonic() - born)
        tell(f"{name} (pid {child.pid}) {why}; restarting it in {delay} s")
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    tell(f"{name} stopped")


def watch_child(child: subprocess.Popen, heartbeat: Path | None, stale_s: float, stopping) -> str:
    """Wait for `child` to end, or to stop beating (it is then stopped); returns what happened."""
    while child.poll() is None and not stopping():
        time.sleep(0.5)
        if heartbeat is None or not beaten_by(heartbeat, child.pid):
            continue  # still starting: its own beat is what is judged
        if (problem := heartbeat_problem(heartbeat, stale_s)) is not None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
            return f"stopped beating ({problem}); stopped"
    return f"ended unasked ({exit_cause(child.wait())})"


def exit_cause(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def beaten_by(heartbeat: Path, pid: int) -> bool:
    try:
        return json.loads(heartbeat.read_text())["pid"] == pid
    except (FileNotFoundError, ValueError, KeyError):
        return False


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} level 2 keep: {message}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Keep a command running (see the docstring).")
    parser.add_argument("action", choices=["keep"])
    parser.add_argument("--heartbeat", type=Path, help="restart it when this stops beating")
    parser.add_argument(
        "--stale-s", type=float, default=RESTART_STALE_S, help="a beat this old: restarted"
    )
    parser.add_argument("command", nargs="+", help="the command, after --")
    args = parser.parse_args()
    keep(args.command, args.heartbeat, args.stale_s)


if __name__ == "__main__":
    main()
