"""What the capacity bench (bench/capacity.py) runs and holds fixed: its servers (level 2 with
one and two uvicorn workers, `mlflow models serve`), their processes read from /proc, and the
registry moves the hot swap makes."""

import os
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.servers import free_port, server_process

MLFLOW = "mlflow models serve"
LEVEL2 = {"level 2, 1 worker": 1, "level 2, 2 workers": 2}  # name -> uvicorn workers
MODEL = "penguins-species"  # what the pipeline registers
SWAP_CONCURRENCY, SWAP_SECONDS = 8, 8.0
PROMOTE_AFTER_S = SWAP_SECONDS / 2  # the answers before and after: two equal halves
READY_TIMEOUT_S = 120.0
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    workers: int
    model: str | None = None  # the registered model a level 2 service follows
    log_uri: str | None = None  # its prediction log
    metrics_dir: Path | None = None  # its workers' metrics files (several workers only)

    def role(self, pid: int) -> str:
        """What a process of the server's group is: a uvicorn worker, the supervisor that
        started them, or multiprocessing's helper; `mlflow models serve`'s CLI or its server."""
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if self.model is None:
            return "CLI" if pid == self.process.pid else "server"
        if self.workers == 1 or b"spawn_main" in command:
            return "worker"
        return "supervisor" if pid == self.process.pid else "resource tracker"


# --- /proc -----------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (state is [0], ppid [1], pgrp [2])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_group(leader: int) -> list[int]:
    """Every live process in the group `leader` leads (a server started by server_process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[2]) == leader:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):  # ended meanwhile
                continue
    return sorted(found)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes used so far."""
    total = 0.0
    for pid in pids:
        fields = _stat(pid)
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def memory_mb(pid: int) -> dict[str, float]:
    """Resident and proportional set size (shared pages split between their users), MB."""

    def kb(path: str, key: str) -> float:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
        return float("nan")

    return {
        "rss_mb": kb(f"/proc/{pid}/status", "VmRSS") / 1024,
        "pss_mb": kb(f"/proc/{pid}/smaps_rollup", "Pss") / 1024,
    }


# --- starting the servers --------------------------------------------------------------------


def served_versions(base_url: str) -> dict[str, float]:
    """Registry version -> workers serving it, as the service's /metrics shows."""
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    shown = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:  # an Info with one worker, a gauge with several
            if sample.name == "penguins_served_model_info" and sample.value:
                shown[sample.labels["version"]] = sample.value
    return shown


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {READY_TIMEOUT_S:g} s")
        time.sleep(0.05)


def start_level2(stack: ExitStack, work: Path, name: str, workers: int, model: str) -> Server:
    port = free_port()
    log_uri = f"sqlite:///{work / f'predictions-{workers}w.db'}"
    env = {
        "LEVEL2_STATE_DIR": str(work),
        "LEVEL2_PORT": str(port),
        "LEVEL2_WORKERS": str(workers),
        "LEVEL2_MODEL_NAME": model,
        "LEVEL2_PREDICTION_LOG_URI": log_uri,
    }
    process = stack.enter_context(server_process("level2_pipelines.serve", env, port, "/ready"))
    base_url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base_url}/ready", timeout=5).status_code == 200, name)
    if workers > 1:
        all_serving = f"{name}: every worker serving"
        wait_until(lambda: sum(served_versions(base_url).values()) == workers, all_serving)
    metrics_dir = work / "worker-metrics" / f"port-{port}" if workers > 1 else None
    return Server(name, port, process, workers, model, log_uri, metrics_dir)


def start_mlflow(stack: ExitStack, work: Path) -> Server:
    port = free_port()
    # `mlflow models serve` starts uvicorn by name: the environment's bin/ must be on PATH.
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        # MLflow's loader refuses skops files unless told to; level 2's `connect` says no in
        # this process. The model is the one this run just trained.
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
    }
    args = ("models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local")
    args += ("-h", "127.0.0.1", "-p", str(port))
    process = stack.enter_context(server_process("mlflow", env, port, "/ping", args))
    base_url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base_url}/ping", timeout=5).status_code == 200, MLFLOW)
    return Server(MLFLOW, port, process, workers=1)


def started(stack: ExitStack, start) -> tuple[Server, float]:
    """A server and the seconds from its process start to answering ready."""
    began = time.perf_counter()
    server = start(stack)
    return server, time.perf_counter() - began


# --- the registry ----------------------------------------------------------------------------


def new_version(client, name: str, like: str) -> str:
    """A new registry version of `name` with the model and lineage of `like`'s champion."""
    from level2_pipelines import registry

    champion = registry.version_by_alias(client, like, registry.CHAMPION)
    tags = {k: v for k, v in champion.tags.items() if k not in {"previous_champion"}}
    return registry.register(client, name, champion.source, champion.run_id, tags)


def promote_on_cue(work: str, name: str, version: str, ready, cue, reply) -> None:
    """Run in a process of its own, warmed up before the load (MLflow takes seconds to import):
    when cued, make `version` champion; reply with the time it was done."""
    from level2_pipelines import registry
    from level2_pipelines.settings import Settings
    from level2_pipelines.tracking import connect

    client = connect(Settings(state_dir=Path(work)))
    current = str(registry.version_by_alias(client, name, registry.CHAMPION).version)
    ready.set()
    if cue.wait(timeout=READY_TIMEOUT_S):
        registry.promote(client, name, version, registry.CHAMPION, current)
        reply.put(time.time())
