"""Where a pipeline run's seconds go: each stage's own work, and its MLflow I/O.

The flow opens one clock (`clocked()`) and the stages measure into it (`measure(...)`): a
context variable, so the clock needs no place in the tasks' parameters. Prefect runs a task
called from a flow in the flow's context, and a stage measured outside a flow run (a test
calling `task.fn`) measures into nothing.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

WORK = "work"  # the pipeline's own computation
MLFLOW = "mlflow"  # reading and writing the tracking store and the registry


class Clock:
    """Seconds spent per (kind, stage)."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = {}

    def add(self, kind: str, stage: str, seconds: float) -> None:
        key = (kind, stage)
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def total(self, kind: str) -> float:
        return sum(s for (k, _), s in self.seconds.items() if k == kind)


_current: ContextVar[Clock | None] = ContextVar("level2_pipeline_clock", default=None)


@contextmanager
def clocked() -> Iterator[Clock]:
    """A new clock the stages measure into until the block ends."""
    clock = Clock()
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)


@contextmanager
def measure(kind: str, stage: str) -> Iterator[None]:
    """Add the block's seconds to the current clock, if there is one."""
    start = time.perf_counter()
    try:
        yield
    finally:
        clock = _current.get()
        if clock is not None:
            clock.add(kind, stage, time.perf_counter() - start)
