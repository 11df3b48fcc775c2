"""What a scorecard cell is: a verdict and the observation behind it, and the rows' names."""

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.contract import INVALID_EXAMPLES

LEVELS = ("level 0", "level 1", "level 2")

# The rows, in the order the table shows them; each is filled by probes of one run.
SAME_MODEL = "same model (vs level 1, held-out birds)"
BAD_REQUESTS = f"bad requests ({len(INVALID_EXAMPLES)} invalid payloads)"
ENDPOINTS = "health / ready / model endpoints"
KNOWLEDGE = "what the service knows about its model"
REPRODUCIBLE = "reproducible training (two runs)"
RECORDS = "experiment record of training"
CORRUPTED = "a corrupted training batch"
WORSE = "a worse model"
NEW_DATA = "new data arrives"
ROLLBACK = "rollback"
DRIFT = "drift in served traffic"
LIVE_ACCURACY = "live accuracy known"
TESTS = "tests that guard the level"
# The canary drill's row (scenarios/canary.py): told by `make drill-canary`, not in the table.
CANARY = "a new model on trial before every caller meets it"
# What each level costs (scenarios/cost.py).
PEOPLE_NEW_DATA = "people: a new batch to a served model"
PEOPLE_ROLLBACK = "people: a rollback"
AT_REST = "machines at rest: processes, memory, CPU"
RETRAINING = "machines per retraining: CPU, wall"
DISK = "disk per retraining (state folder growth)"
CODE = "code to keep: lines of code / of tests"
DEPENDENCIES = "dependencies: packages in a copy's lock"


def serving_row(seconds: float) -> str:
    return f"serving at c=8 ({seconds:g} s each)"


ROW_ORDER = (
    SAME_MODEL,
    BAD_REQUESTS,
    ENDPOINTS,
    KNOWLEDGE,
    "serving at c=8",  # its name carries the load's length: matched by prefix
    REPRODUCIBLE,
    RECORDS,
    CORRUPTED,
    WORSE,
    NEW_DATA,
    ROLLBACK,
    DRIFT,
    LIVE_ACCURACY,
    TESTS,
    PEOPLE_NEW_DATA,
    PEOPLE_ROLLBACK,
    AT_REST,
    RETRAINING,
    DISK,
    CODE,
    DEPENDENCIES,
)


@dataclass
class Cell:
    ok: bool | None  # True: the level has it; False: the gap; None: a neutral figure
    text: str

    def __str__(self) -> str:
        return {True: "✓ ", False: "✗ ", None: ""}[self.ok] + self.text


Row = tuple[str, dict[str, Cell]]


def row_rank(capability: str) -> int:
    """Where a row goes in the table: ROW_ORDER's place, unknown rows last."""
    for rank, name in enumerate(ROW_ORDER):
        if capability.startswith(name):
            return rank
    return len(ROW_ORDER)


def not_measured(reason: str) -> Cell:
    return Cell(None, f"not measured: {reason}")


def last_words(output: str, limit: int = 100) -> str:
    """What a failed command said last: its exception line if it raised, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
    line = (raised or lines or ["no output"])[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def attempt(step: Callable[[], Any]) -> tuple[Any, str]:
    """Run one of a level's commands: (its result, "") or (None, what it said as it failed)."""
    try:
        return step(), ""
    except subprocess.CalledProcessError as error:
        return None, last_words(error.stderr or error.stdout or "")


def shown(version: str | None) -> str:
    return f"v{version}" if version else "nothing"


def failed_step(error: subprocess.CalledProcessError) -> str:
    """One readable paragraph for a level's command that failed: which, and its last words."""
    command = " ".join(str(a) for a in error.cmd[1:])
    tail = "\n".join((error.stderr or error.stdout or "").strip().splitlines()[-8:])
    return f"a level's command failed: python {command}\n{tail}"


def failed_service(error: Exception, lines: int = 8) -> str:
    """A service that did not start: the message's first line (which, and why) and the last
    `lines` of what it said."""
    said = str(error).strip().splitlines()
    return "\n".join(said if len(said) <= lines + 1 else [said[0], *said[-lines:]])
