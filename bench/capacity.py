"""Capacity of the level 2 service on this 2-core machine, with its prediction log on: one and
two uvicorn workers, against `mlflow models serve` on the same registered champion.

    python -m bench.capacity [--seconds 5] [--rounds 3] [--reuse-model]
    (make bench-capacity)

One pipeline run trains and promotes a champion into a fresh state folder; the 2-worker service
follows a copy of it under another registered name, so that promoting a version for one
service leaves the other alone. Each server is started alone and timed from its process start
to /ready answering 200 (with two workers: to both serving, as /metrics counts them; the probe
looks every 0.2 s). Then the three run together and are loaded in turn, round-robin per round,
with the loopback load generator of `shared/loadgen.py` at c=1/8/32/64 (mlflow at c=32 only);
each cell is the median over rounds. The load generator runs in this process: it competes with
the servers for the same 2 cores, and its CPU is reported next to theirs. Requests per worker
come from the workers' metrics files. Memory is each process's resident set (and proportional
set, which counts shared pages once) from /proc, after the load. Then, for each level 2
service, a new champion is promoted halfway through 8 s of requests on 8 connections: the
slowest answer and the longest gap between two answers in the half after the promotion against
the half before it, errors, and when the new version answered first and the old one last (from
the prediction log). Last,
with the servers stopped, each prediction log must hold every answer its service gave.
Writes state/bench/capacity.md and capacity.json.

Target (issue "Beyond one machine"): two workers at c=32 give at least 60x the requests/s of
`mlflow models serve` at c=32, with p99 <= 15 ms and no errors.
"""

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.contract import EXAMPLE_PAYLOAD
from shared.loadgen import LoadResult, round_robin, run_load
from shared.paths import state_dir
from shared.servers import free_port, server_process

CONCURRENCY = (1, 8, 32, 64)
MLFLOW, MLFLOW_AT = "mlflow models serve", 32
LEVEL2 = {"level 2, 1 worker": 1, "level 2, 2 workers": 2}  # name -> uvicorn workers
MODEL = "penguins-species"  # what the pipeline registers
TARGET = ("level 2, 2 workers", 32)
TARGET_RATIO, TARGET_P99_MS = 60.0, 15.0
SWAP_CONCURRENCY, SWAP_SECONDS = 8, 8.0
PROMOTE_AFTER_S = SWAP_SECONDS / 2  # the answers before and after: two equal halves
READY_TIMEOUT_S = 120.0
TICK = os.sysconf("SC_CLK_TCK")
PAYLOAD = json.dumps(EXAMPLE_PAYLOAD).encode()
MLFLOW_PAYLOAD = json.dumps({"dataframe_records": [EXAMPLE_PAYLOAD]}).encode()


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


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Cell:
    """What one load run of one server cost, beyond its latencies."""

    server_cpu_s: float
    loadgen_cpu_s: float
    wall_s: float
    per_worker: list[int]


def measured(server: Server, path: str, body: bytes, seconds: float, cells: dict):
    """A load function for round_robin that also records CPU and requests per worker."""

    def load(concurrency: int) -> LoadResult:
        pids = process_group(server.process.pid)
        counts = worker_counts(server)
        cpu, own, wall = cpu_seconds(pids), time.process_time(), time.perf_counter()
        result = run_load(server.port, path, body, concurrency=concurrency, seconds=seconds)
        after = worker_counts(server)
        cells.setdefault((server.name, concurrency), []).append(
            Cell(
                server_cpu_s=cpu_seconds(pids) - cpu,
                loadgen_cpu_s=time.process_time() - own,
                wall_s=time.perf_counter() - wall,
                per_worker=sorted((after[p] - counts.get(p, 0) for p in after), reverse=True),
            )
        )
        return result

    return load


def worker_counts(server: Server) -> dict[int, int]:
    if server.metrics_dir is None:
        return {}
    from level2_pipelines.metrics import requests_by_worker

    return requests_by_worker(server.metrics_dir, "/predict")


def hot_swap(server: Server, work: Path, client) -> dict:
    """Promote a new champion while SWAP_CONCURRENCY connections send requests."""
    version = new_version(client, server.model, server.model)
    spawn = multiprocessing.get_context("spawn")
    ready, cue, reply = spawn.Event(), spawn.Event(), spawn.Queue()
    promoter = spawn.Process(
        target=promote_on_cue, args=(str(work), server.model, version, ready, cue, reply)
    )
    promoter.start()
    if not ready.wait(timeout=READY_TIMEOUT_S):
        raise TimeoutError("the promoting process did not start")
    cued: list[float] = []

    def promote() -> None:
        cued.append(time.perf_counter())
        cue.set()

    timer = threading.Timer(PROMOTE_AFTER_S, promote)
    timer.start()
    result = run_load(
        server.port, "/predict", PAYLOAD, concurrency=SWAP_CONCURRENCY, seconds=SWAP_SECONDS
    )
    promoted_at = reply.get(timeout=READY_TIMEOUT_S)
    promoter.join()
    time.sleep(1.5)  # the log writes every 0.5 s
    first_new, last_old = answers_around(server.log_uri, version, promoted_at)
    before = [i for i, t in enumerate(result.answered_at) if t < cued[0]]
    after = [i for i, t in enumerate(result.answered_at) if t >= cued[0]]

    def slowest(indices: list[int]) -> float:
        return 1000 * max(result.latencies_s[i] for i in indices)

    def longest_gap(indices: list[int]) -> float:
        times = sorted(result.answered_at[i] for i in indices)
        return 1000 * max(b - a for a, b in pairwise(times))

    return {
        "target": server.name,
        "concurrency": SWAP_CONCURRENCY,
        "new_version": version,
        "answers": result.ok,
        "errors": result.requests - result.ok + sum(result.failures.values()),
        "slowest_ms_before": slowest(before),
        "slowest_ms_after": slowest(after),
        "longest_gap_ms_before": longest_gap(before),
        "longest_gap_ms_after": longest_gap(after),
        "new_first_answered_s": first_new,
        "old_last_answered_s": last_old,
    }


def answers_around(log_uri: str, new: str, promoted_at: float) -> tuple[float, float]:
    """Seconds after the promotion when `new` answered first, and the old version last."""
    import sqlalchemy as sa

    engine = sa.create_engine(log_uri)
    with engine.connect() as connection:
        first_new, last_old = connection.execute(
            sa.text(
                "select min(case when model_version = :new then served_at end), "
                "max(case when model_version != :new then served_at end) from predictions"
            ),
            {"new": new},
        ).one()
    engine.dispose()
    nan = float("nan")  # the swap did not land inside the load
    return (
        first_new - promoted_at if first_new is not None else nan,
        last_old - promoted_at if last_old is not None else nan,
    )


def logged_rows(log_uri: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(log_uri)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("select count(*) from predictions")).scalar()
    engine.dispose()
    return rows


# --- the run ---------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="Level 2 capacity: 1 and 2 workers vs mlflow.")
    parser.add_argument("--seconds", type=float, default=5.0, help="per load run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--reuse-model", action="store_true", help="keep the previous run's registry: no training"
    )
    args = parser.parse_args()
    out = state_dir() / "bench"
    work = out / "capacity-level2"
    load_before = os.getloadavg()
    began = time.perf_counter()
    if args.reuse_model and (work / "mlflow.db").exists():
        for log in work.glob("predictions-*"):  # each log must hold this run's answers only
            log.unlink()
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print(f"bench-capacity: one pipeline run to train a champion into {work}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "level2_pipelines.pipeline_cli"],
            env={**os.environ, "LEVEL2_STATE_DIR": str(work), "LEVEL2_PORT": "1"},
            check=True,
            stdout=subprocess.DEVNULL,
        )
    from level2_pipelines import registry
    from level2_pipelines.settings import Settings
    from level2_pipelines.tracking import connect

    client = connect(Settings(state_dir=work))
    # One registered model per service: a promotion for one leaves the other alone.
    models = {name: f"{MODEL}-{n}-workers" if n > 1 else MODEL for name, n in LEVEL2.items()}
    for model in set(models.values()) - {MODEL}:
        current = registry.version_by_alias(client, model, registry.CHAMPION)
        version = new_version(client, model, MODEL)
        judged = str(current.version) if current else None
        registry.promote(client, model, version, registry.CHAMPION, judged)

    cells: dict[tuple[str, int], list[Cell]] = {}
    startup, memory, swaps = {}, {}, []
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        for name, workers in LEVEL2.items():
            print(f"bench-capacity: starting {name}", flush=True)
            servers[name], startup[name] = started(
                stack, lambda s, n=name, w=workers: start_level2(s, work, n, w, models[n])
            )
        print(f"bench-capacity: starting {MLFLOW}", flush=True)
        servers[MLFLOW], startup[MLFLOW] = started(stack, lambda s: start_mlflow(s, work))
        targets = {
            name: measured(server, "/predict", PAYLOAD, args.seconds, cells)
            for name, server in servers.items()
            if name != MLFLOW
        }
        targets[MLFLOW] = measured(
            servers[MLFLOW], "/invocations", MLFLOW_PAYLOAD, args.seconds, cells
        )
        rows, runs = round_robin(
            targets,
            CONCURRENCY,
            args.rounds,
            say=lambda line: print(line.replace("bench:", "bench-capacity:"), flush=True),
            only={MLFLOW: [MLFLOW_AT]},
        )
        for name, server in servers.items():
            memory[name] = [
                {"pid": pid, "role": server.role(pid), **memory_mb(pid)}
                for pid in process_group(server.process.pid)
            ]
        for name in LEVEL2:
            print(f"bench-capacity: {name}: a new champion promoted under load", flush=True)
            swaps.append(hot_swap(servers[name], work, client))
        logs = {name: servers[name].log_uri for name in LEVEL2}
    # Stopped cleanly (SIGTERM): each worker wrote what was still pending.
    answered = {
        name: sum(r.ok for (n, _), results in runs.items() if n == name for r in results)
        + sum(s["answers"] for s in swaps if s["target"] == name)
        for name in LEVEL2
    }
    logged = {name: logged_rows(uri) for name, uri in logs.items()}
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "seconds_per_run": args.seconds,
        "rounds": args.rounds,
        "rows": rows,
        "cells": {f"{n} c={c}": [vars(cell) for cell in v] for (n, c), v in cells.items()},
        "startup_s": startup,
        "memory": memory,
        "hot_swap": swaps,
        "answered": answered,
        "logged": logged,
        "bench_s": time.perf_counter() - began,
    }
    report(results, cells, out)


def share(cells: list[Cell]) -> str:
    """How the requests of all rounds split between the workers, busiest first."""
    if not cells or len(cells[0].per_worker) < 2:
        return "-"
    totals = [sum(c.per_worker[i] for c in cells) for i in range(len(cells[0].per_worker))]
    return " / ".join(f"{100 * n / sum(totals):.0f}%" for n in totals) if sum(totals) else "-"


def cores(cells: list[Cell], field: str) -> float:
    return statistics.median(getattr(c, field) / c.wall_s for c in cells)


def report(results: dict, cells: dict[tuple[str, int], list[Cell]], out: Path) -> None:
    rows = results["rows"]
    mlflow = next(r for r in rows if r["target"] == MLFLOW)["requests_per_s"]
    order = [*LEVEL2, MLFLOW]
    lines = [
        f"{results['date']}, {results['cores']} cores; load average "
        f"{results['load_average_before'][0]:.1f} before, {results['load_average_after'][0]:.1f} "
        f"after (1 min). Median of {results['rounds']} rounds of "
        f"{results['seconds_per_run']:g} s per cell; prediction log on; the load generator "
        "(one process, asyncio, keep-alive) shares the 2 cores with the servers.",
        "",
        "| target | c | requests/s | p50 ms | p99 ms | vs mlflow c=32 | errors "
        "| requests per worker | CPU cores: server / load generator |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (order.index(r["target"]), r["concurrency"])):
        cell = cells[(r["target"], r["concurrency"])]
        r["vs_mlflow"] = r["requests_per_s"] / mlflow
        r["per_worker"] = share(cell)
        r["server_cores"] = cores(cell, "server_cpu_s")
        r["loadgen_cores"] = cores(cell, "loadgen_cpu_s")
        lines.append(
            f"| {r['target']} | {r['concurrency']} | {r['requests_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['vs_mlflow']:.1f}x | {r['errors']} | "
            f"{r['per_worker']} | {r['server_cores']:.2f} / {r['loadgen_cores']:.2f} |"
        )
    lines += ["", "| target | start to ready s | memory: each process RSS MB | RSS sum | PSS sum |"]
    lines.append("|---|---|---|---|---|")
    for name in order:
        processes = results["memory"][name]
        each = ", ".join(f"{p['role']} {p['rss_mb']:.0f}" for p in processes)
        lines.append(
            f"| {name} | {results['startup_s'][name]:.1f} | {each} | "
            f"{sum(p['rss_mb'] for p in processes):.0f} | "
            f"{sum(p['pss_mb'] for p in processes):.0f} |"
        )
    lines += [
        "",
        f"Hot swap: a new champion promoted {PROMOTE_AFTER_S:g} s into {SWAP_SECONDS:g} s of "
        f"load at c={SWAP_CONCURRENCY} (the service polls the registry every second).",
        "",
        "| target | answers | errors | slowest answer ms: before / after | longest gap between "
        "answers ms: before / after | new version's first, old's last answer (s after) |",
        "|---|---|---|---|---|---|",
    ]
    for s in results["hot_swap"]:
        lines.append(
            f"| {s['target']} | {s['answers']:,} | {s['errors']} | {s['slowest_ms_before']:.1f} "
            f"/ {s['slowest_ms_after']:.1f} | {s['longest_gap_ms_before']:.1f} / "
            f"{s['longest_gap_ms_after']:.1f} | {s['new_first_answered_s']:.2f}, "
            f"{s['old_last_answered_s']:.2f} |"
        )
    lines.append("")
    for name in LEVEL2:
        answered, logged = results["answered"][name], results["logged"][name]
        lost = "none lost" if logged == answered else f"{answered - logged:,} LOST"
        lines.append(
            f"{name}: {answered:,} answers, {logged:,} rows in its prediction log after a clean "
            f"stop ({lost})"
        )
    target = next(r for r in rows if (r["target"], r["concurrency"]) == TARGET)
    met = (
        target["vs_mlflow"] >= TARGET_RATIO
        and target["p99_ms"] <= TARGET_P99_MS
        and target["errors"] == 0
    )
    lines += [
        "",
        f"{TARGET[0]} at c={TARGET[1]}: {target['vs_mlflow']:.1f}x mlflow models serve (target "
        f">= {TARGET_RATIO:g}x), p99 {target['p99_ms']:.1f} ms (target <= {TARGET_P99_MS:g} ms), "
        f"{target['errors']} errors: {'met' if met else 'NOT met'}",
        f"bench took {results['bench_s']:.0f} s",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.md").write_text(text + "\n")
    (out / "capacity.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nbench-capacity: wrote {out / 'capacity.md'} and capacity.json")


if __name__ == "__main__":
    main()
