"""The workshop path, measured: `make bench-workshop` (a few tens of minutes on 2 cores).

Each row is what a workshop leader or attendee waits for, timed on a fresh clone of this
checkout's HEAD in a temporary folder (so nothing here is touched), against its target:

    python -m bench.workshop [--rows demo-fresh,test,...] [--repeat 3]

Cheap rows are repeated and their median reported; whole-demo rows run once. The table is
printed and written to state/bench/workshop.md. Every server it starts listens on loopback,
on free ports, and is stopped before it returns.
"""

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from shared.paths import REPO_ROOT, state_dir
from shared.servers import free_port
from shared.simulate import simulate_batch
from tools.docs_figures import DOCS, refresh

# what is measured -> (target in seconds, how many runs for the median)
TARGETS = {
    "demo-fresh": ("`make demo`, fresh clone, set-up included", 180.0, 1),
    "demo": ("`make demo`, environment already there", 90.0, 1),
    "test": ("`make test` (after set-up)", 120.0, 1),
    "scorecard": ("`make scorecard`", 150.0, 1),
    "level2": ("`make level2`, no servers", 20.0, 3),
    "level2-up": ("`make level2` with `make level2-up` running", 8.0, 3),
    "landed": ("batch in `incoming/` -> new champion served (servers up)", 8.0, 3),
}
LANDING_TIMEOUT_S = 180.0


class Clone:
    """A fresh clone of HEAD with its own state folder and free ports for level 2's servers."""

    def __init__(self, root: Path):
        self.root = root
        subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(root)], check=True)
        ports = {
            "LEVEL2_PORT": free_port(),
            "LEVEL2_PREFECT_PORT": free_port(),
            "LEVEL2_MLFLOW_UI_PORT": free_port(),
        }
        # None of this checkout's own make exports leak into the clone's make.
        self.env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")}
        self.env.update({k: str(v) for k, v in ports.items()} | {"NO_COLOR": "1"})
        for name in ("PYTHONPYCACHEPREFIX", "PREFECT_HOME", "HYPOTHESIS_STORAGE_DIRECTORY"):
            self.env.pop(name, None)

    def make(self, *targets: str, check: bool = True) -> float:
        """Seconds `make targets` took; output to a log in the clone's state folder."""
        log_dir = self.root / "state" / "bench-logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with (log_dir / f"{'_'.join(targets)}.log").open("a") as log:
            done = subprocess.run(
                ["make", *targets], cwd=self.root, env=self.env, stdout=log, stderr=log
            )
        took = time.perf_counter() - started
        if check and done.returncode != 0:
            tail = (log_dir / f"{'_'.join(targets)}.log").read_text().splitlines()[-5:]
            raise RuntimeError(f"make {' '.join(targets)} failed:\n  " + "\n  ".join(tail))
        return took

    @contextlib.contextmanager
    def servers(self):
        """`make level2-up` and `make level2-serve`, stopped (and checked stopped) after."""
        self.make("level2-up")
        serve = subprocess.Popen(
            ["make", "level2-serve"],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            yield f"http://127.0.0.1:{self.env['LEVEL2_PORT']}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(serve.pid, 15)
            serve.wait(timeout=30)
            self.make("level2-down", check=False)


def served_version(base_url: str) -> str | None:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        return httpx.get(f"{base_url}/model", timeout=2).json().get("version")
    return None


def land_and_wait(clone: Clone, base_url: str, seed: int) -> float:
    """Seconds from a batch file landing in incoming/ to a new champion being served."""
    before = served_version(base_url)
    incoming = clone.root / "state" / "level2" / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    batch = simulate_batch(120, seed=seed)
    staging = incoming.parent / f"landing-{seed}.csv"
    batch.to_csv(staging, index=False)
    started = time.perf_counter()
    staging.rename(incoming / staging.name)  # one atomic landing, as a real drop should be
    while time.perf_counter() - started < LANDING_TIMEOUT_S:
        version = served_version(base_url)
        if version is not None and version != before:
            return time.perf_counter() - started
        time.sleep(0.2)
    raise TimeoutError(f"no new champion served {LANDING_TIMEOUT_S:.0f} s after the landing")


def measure(rows: list[str], repeat: int | None, workdir: Path) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    clone = Clone(workdir / "clone")
    runs = {row: repeat or TARGETS[row][2] for row in rows}

    def record(row: str, step: Callable[[int], float]) -> None:
        if row in rows:
            figures[row] = [step(i) for i in range(runs[row])]
            print(f"{row}: {', '.join(f'{s:.1f}' for s in figures[row])} s", flush=True)

    record("demo-fresh", lambda i: clone.make("demo"))
    if "demo-fresh" not in rows:
        clone.make("setup")
    record("demo", lambda i: clone.make("demo"))
    record("test", lambda i: clone.make("test"))
    record("scorecard", lambda i: clone.make("scorecard"))
    record("level2", lambda i: clone.make("level2", "FORCE=1"))
    if {"level2-up", "landed"} & set(rows):
        with clone.servers() as base_url:
            record("level2-up", lambda i: clone.make("level2", "FORCE=1"))
            record("landed", lambda i: land_and_wait(clone, base_url, seed=1000 + i))
    return figures


def table(figures: dict[str, list[float]]) -> str:
    lines = [
        "| what | runs | median s | target s | median / target | met |",
        "|---|---|---|---|---|---|",
    ]
    for row, values in figures.items():
        what, target, _ = TARGETS[row]
        median = statistics.median(values)
        met = "yes" if median <= target else "no"
        lines.append(
            f"| {what} | {len(values)} | {median:.1f} | {target:.0f} | {median / target:.2f} "
            f"| {met} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the workshop path against its targets.")
    parser.add_argument("--rows", default=",".join(TARGETS), help="comma-separated row names")
    parser.add_argument("--repeat", type=int, help="runs per row (default: per row)")
    parser.add_argument(
        "--docs", action="store_true", help="also rewrite its block of docs/measurements.md"
    )
    args = parser.parse_args()
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(TARGETS)
    if unknown:
        sys.exit(f"bench-workshop: unknown rows {sorted(unknown)}; known: {', '.join(TARGETS)}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-workshop-"))
    try:
        figures = measure(rows, args.repeat, workdir)
    except (RuntimeError, TimeoutError) as error:
        sys.exit(f"bench-workshop: {error}; the clone and its logs are kept in {workdir}")
    shutil.rmtree(workdir, ignore_errors=True)
    text = table(figures)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = state_dir() / "bench" / "workshop.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# Workshop path, {stamp}, {os.cpu_count()} cores\n\n{text}\n")
    print(f"\n{text}\n\nwritten to {out}")
    if args.docs:
        dated = f"`make bench-workshop` on a fresh clone, {stamp}, {os.cpu_count()} cores:"
        refresh(DOCS / "measurements.md", "workshop", f"{dated}\n\n{text}")
        print(f"written to its block of {DOCS / 'measurements.md'}")


if __name__ == "__main__":
    main()
