"""What a level's processes cost the machine: how many, resident memory and CPU, read with
psutil from the real processes the lab started (nothing is declared), and the disk its state
folder takes.

A level's processes are the lab's children whose command names the level (level 2: also the
Prefect server its runs use), with all their descendants; the levels' own test suites, which the
scorecard runs in the background, are not the level's running cost and are left out.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

# What a level's command line names: its package (level 2's Prefect server: "prefect").
MARKS = {
    "level 0": ("level0_notebook",),
    "level 1": ("level1_devops",),
    "level 2": ("level2_pipelines", "prefect"),
}
SAMPLE_S = 0.1  # a process living less than this between two samples can be missed


def level_processes(level: str, parent: psutil.Process | None = None) -> list[psutil.Process]:
    """The level's live processes under `parent` (default: this one), descendants included."""
    found = []
    for child in (parent or psutil.Process()).children():
        try:
            argv = child.cmdline()
            if is_test_run(argv) or not any(mark in " ".join(argv) for mark in MARKS[level]):
                continue
            found += [child, *child.children(recursive=True)]
        except psutil.Error:  # ended meanwhile
            continue
    return found


def is_test_run(argv: list[str]) -> bool:
    """`pytest ...` or `python -m pytest ...`; only the program is read, not a folder named
    after pytest further on."""
    return any(Path(arg).name in ("pytest", "py.test") for arg in argv[:3])


def own_cpu_s(process: psutil.Process) -> float:
    """User + system CPU-seconds of the process itself (its children are counted apart)."""
    times = process.cpu_times()
    return times.user + times.system


@dataclass
class Usage:
    processes: int = 0
    rss_mb: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_s / self.wall_s if self.wall_s else 0.0


class CpuMeter:
    """CPU-seconds a level's processes spend inside `measuring()`: every process seen is
    sampled every SAMPLE_S, so one that ends is counted up to its last sample."""

    def __init__(self, level: str) -> None:
        self.level = level
        self.first: dict[int, float] = {}  # pid -> its CPU-seconds when the block began
        self.last: dict[int, float] = {}
        self._done = threading.Event()

    def sample(self, started: bool) -> None:
        for process in level_processes(self.level):
            try:
                used = own_cpu_s(process)
            except psutil.Error:
                continue
            # Running before the block: only what it spends from then on counts.
            self.first.setdefault(process.pid, 0.0 if started else used)
            self.last[process.pid] = used

    def poll(self) -> None:
        while not self._done.wait(SAMPLE_S):
            self.sample(started=True)

    @contextmanager
    def measuring(self) -> Iterator[Usage]:
        """Yields a Usage whose CPU and wall time are filled in when the block ends."""
        usage = Usage()
        self.sample(started=False)
        begun = time.perf_counter()
        poller = threading.Thread(target=self.poll, daemon=True)
        poller.start()
        try:
            yield usage
        finally:
            self._done.set()
            poller.join()
            self.sample(started=True)
            usage.wall_s = time.perf_counter() - begun
            usage.cpu_s = sum(self.last[pid] - self.first[pid] for pid in self.last)


def at_rest(levels: tuple[str, ...], seconds: float) -> dict[str, Usage]:
    """Each level's processes, RSS and CPU over `seconds` with nothing asked of them."""
    before = {lv: {p.pid: (p, own_cpu_s(p)) for p in level_processes(lv)} for lv in levels}
    time.sleep(seconds)
    usage = {}
    for level, seen in before.items():
        cpu, rss, alive = 0.0, 0.0, 0
        for process, used in seen.values():
            try:
                cpu += own_cpu_s(process) - used
                rss += process.memory_info().rss / 2**20
                alive += 1
            except psutil.Error:
                continue
        usage[level] = Usage(alive, rss, cpu, seconds)
    return usage


def folder_bytes(folder: Path) -> int:
    """What the files under `folder` take (their sizes; 0 if it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
