"""The table one scorecard run fills, and what its scenarios share: the lab they drive the
levels through, the narration, the bounds on every wait and load, and what the first
trainings left for the scenarios that compare or restore."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from workshop.lab import Lab, held_out_rows
from workshop.scorecard.cells import LEVELS, Cell, Row, row_rank

if TYPE_CHECKING:
    import pandas as pd

    from workshop.scorecard.machines import Usage

T = TypeVar("T")

LOAD_SECONDS = 3.0
DRIFT_WINDOW = 200  # the drift monitor's window: the traffic it needs for a verdict
# Level 2's service polls the registry every 0.5 s in the lab and deploy asks it to reload at
# once; 30 s is far beyond both, so a model not served by then is not coming.
SERVE_WAIT_S = 30.0


def side_by_side(steps: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run each level's step in a thread of its own; their results by level. The first error
    is raised once every step has finished, so no level is left running behind it."""
    with ThreadPoolExecutor(max(1, len(steps))) as pool:
        futures = {name: pool.submit(step) for name, step in steps.items()}
    return {name: future.result() for name, future in futures.items()}


@dataclass
class Trainings:
    """What each level's first two trainings on the shared data left (scenarios/training.py):
    reproducibility and the record of training compare them."""

    level0_pickles: list[bytes] = field(default_factory=list)
    level1_model_cards: list[dict] = field(default_factory=list)  # the first run's, the second's
    level2_versions: list[str] = field(default_factory=list)  # the versions the runs registered
    level2_runs: int = 0


@dataclass
class PersonSteps:
    """What a person does at one level for one task (a new batch served, a rollback)."""

    typed: list[str] = field(default_factory=list)  # commands this run ran, as a person would
    declared: list[str] = field(default_factory=list)  # not run here; the scenario says why
    decisions: list[str] = field(default_factory=list)  # what a person must judge


@dataclass
class Retraining:
    """One level's retraining on new data (scenarios/new_data.py): its machine use and what
    its state folder grew by."""

    usage: "Usage"
    grew_bytes: int


class Scorecard:
    """The cells of one run by row and level, and what every scenario reads from."""

    def __init__(self, lab: Lab, progress: Callable[[str], None]) -> None:
        self.lab, self.say = lab, progress
        self.cells: dict[str, dict[str, Cell]] = {}
        self.latency: dict[str, dict[str, float]] = {}
        self.serve_wait_s = SERVE_WAIT_S
        self.load_seconds = LOAD_SECONDS
        self.drift_window = DRIFT_WINDOW
        self.trained = Trainings()
        self.people: dict[str, dict[str, PersonSteps]] = {}  # task -> level -> steps
        self.at_rest: dict[str, Usage] = {}
        self.retraining: dict[str, Retraining] = {}
        self.costs: dict[str, dict[str, float]] = {}  # level -> figure -> value (the chart's)
        self._lock = threading.Lock()

    @cached_property
    def held_out(self) -> "pd.DataFrame":
        """The held-out birds every service is asked about, loaded once per run."""
        return held_out_rows()

    def person(self, task: str, level: str) -> PersonSteps:
        with self._lock:
            return self.people.setdefault(task, {}).setdefault(level, PersonSteps())

    def typed(self, task: str, level: str, command: str, step: Callable[[], T]) -> T:
        """Run one of a level's commands and count it as typed by a person, once it ran."""
        result = step()
        self.person(task, level).typed.append(command)
        return result

    def put(self, capability: str, level: str, cell: Cell) -> None:
        """One level's cell; the row is told once all three levels have theirs."""
        with self._lock:
            row = self.cells.setdefault(capability, {})
            row[level] = cell
            complete = len(row) == len(LEVELS)
        if complete:
            self.say(f"   {capability}: " + " | ".join(f"{lv} {row[lv]}" for lv in LEVELS))

    def add(self, row: Row) -> Row:
        """A scenario's whole row; returned, so a caller can add and read it at once."""
        capability, cells = row
        for level in LEVELS:
            self.put(capability, level, cells[level])
        return row

    @property
    def rows(self) -> list[Row]:
        """The rows with a cell for every level, in the table's order."""
        with self._lock:
            done = [(c, dict(row)) for c, row in self.cells.items() if len(row) == len(LEVELS)]
        return sorted(done, key=lambda row: row_rank(row[0]))

    def say_prefect(self, server: str) -> None:
        if server.startswith("http"):
            self.say(f"level 2's runs use the lab's Prefect server at {server}")
        else:
            self.say(f"the lab's Prefect server: {server}; each level 2 run boots its own")
