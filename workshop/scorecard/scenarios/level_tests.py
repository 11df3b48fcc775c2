"""The tests that guard each level: its own suite, run (or only counted, `--quick`) as its
README runs it, in the background while the other scenarios run."""

import re
from concurrent.futures import Future, ThreadPoolExecutor

from workshop.scorecard.cells import LEVELS, TESTS, Cell, Row, last_words, not_measured
from workshop.scorecard.table import Scorecard

FOLDERS = {
    "level 0": "level0_notebook",
    "level 1": "level1_devops/tests",
    "level 2": "level2_pipelines/tests",
}


class Suites:
    """Each level's suite, started in `pool` from now on; its row once all have finished."""

    def __init__(self, card: Scorecard, collect_only: bool, pool: ThreadPoolExecutor) -> None:
        self.collect_only = collect_only
        card.say(
            f"{'counting' if collect_only else 'running'} each level's own tests in the "
            "background, from now on"
        )
        self.runs: dict[str, Future] = {}
        for level in ("level 2", "level 1", "level 0"):  # the longest first
            # Level 2's suite is the longest, and the last thing the run waits for: both cores,
            # which it has to itself once the other scenarios are done.
            workers = 2 if level == "level 2" else 1
            self.runs[level] = pool.submit(
                card.lab.run_tests, FOLDERS[level], collect_only, workers
            )

    def finished(self) -> bool:
        return all(run.done() for run in self.runs.values())

    def row(self) -> Row:
        """Waits for every suite."""
        cells = {}
        for level in LEVELS:
            result = self.runs[level].result()
            cells[level] = tests_cell(
                result.returncode, result.stdout + result.stderr, self.collect_only
            )
        return TESTS, cells


def observe(card: Scorecard, quick: bool) -> Row:
    """The three suites side by side, nothing else."""
    with ThreadPoolExecutor(len(LEVELS)) as pool:
        return Suites(card, quick, pool).row()


def tests_cell(returncode: int, output: str, collect_only: bool) -> Cell:
    """pytest's own summary of a level's tests: counted (collect only) or run."""
    counts = re.findall(r"(\d+) (passed|failed|errors?|tests? collected)", output)
    if counts:
        passed = None if collect_only else returncode == 0  # counting says nothing of passing
        # pytest's short summary (-ra) names each test that failed: the first one is shown.
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
        which = f" (first: {failed[0].rsplit('::', 1)[-1]})" if failed else ""
        return Cell(passed, ", ".join(f"{n} {w}" for n, w in counts) + which)
    if returncode == 5:  # pytest's "no tests collected"
        return Cell(False, "none: pytest finds no tests")
    return not_measured(f"pytest exit {returncode} ({last_words(output)})")
