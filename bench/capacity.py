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
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from itertools import pairwise
from pathlib import Path

from bench.capacity_report import Cell, report
from bench.capacity_setup import (
    LEVEL2,
    MLFLOW,
    MODEL,
    PROMOTE_AFTER_S,
    READY_TIMEOUT_S,
    SWAP_CONCURRENCY,
    SWAP_SECONDS,
    Server,
    cpu_seconds,
    memory_mb,
    new_version,
    process_group,
    promote_on_cue,
    start_level2,
    start_mlflow,
    started,
)
from shared.contract import EXAMPLE_PAYLOAD
from shared.loadgen import LoadResult, round_robin, run_load
from shared.paths import state_dir

MLFLOW_AT = 32
CONCURRENCY = (1, 8, 32, 64)
PAYLOAD = json.dumps(EXAMPLE_PAYLOAD).encode()
MLFLOW_PAYLOAD = json.dumps({"dataframe_records": [EXAMPLE_PAYLOAD]}).encode()


# --- measuring -------------------------------------------------------------------------------


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
        "--docs", action="store_true", help="also rewrite its block of docs/measurements.md"
    )
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
    report(results, cells, out, docs=args.docs)


if __name__ == "__main__":
    main()
