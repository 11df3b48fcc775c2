"""The capacity bench's report: each server's cells, against the target, as Markdown and JSON."""

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.capacity_setup import LEVEL2, MLFLOW, PROMOTE_AFTER_S, SWAP_CONCURRENCY, SWAP_SECONDS
from tools.docs_figures import DOCS, refresh

TARGET = ("level 2, 2 workers", 32)
TARGET_RATIO, TARGET_P99_MS = 60.0, 15.0


@dataclass
class Cell:
    """What one load run of one server cost, beyond its latencies."""

    server_cpu_s: float
    loadgen_cpu_s: float
    wall_s: float
    per_worker: list[int]


def share(cells: list[Cell]) -> str:
    """How the requests of all rounds split between the workers, busiest first."""
    if not cells or len(cells[0].per_worker) < 2:
        return "-"
    totals = [sum(c.per_worker[i] for c in cells) for i in range(len(cells[0].per_worker))]
    return " / ".join(f"{100 * n / sum(totals):.0f}%" for n in totals) if sum(totals) else "-"


def cores(cells: list[Cell], field: str) -> float:
    return statistics.median(getattr(c, field) / c.wall_s for c in cells)


def report(
    results: dict, cells: dict[tuple[str, int], list[Cell]], out: Path, docs: bool = False
) -> None:
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
    if docs:
        page = DOCS / "measurements.md"
        refresh(page, "capacity", f"`make bench-capacity`, {text}")
        print(f"bench-capacity: wrote its block of {page}")
