"""A whole scorecard run, and the demo, over scripted levels (tests/scorecard_fakes.py): the
levels work side by side, every cell of the table comes from a probe of this run, and the demo
ends with a table of what it ran without training anything twice."""

import re
import threading
import time

import pytest

from tests.scorecard_fakes import FakeLab, cells_of, quiet
from workshop.demo import Narrator, run_demo
from workshop.lab import held_out_rows
from workshop.scorecard.cells import LEVELS, NEW_DATA, ROW_ORDER
from workshop.scorecard.runner import run
from workshop.scorecard.table import side_by_side

PYTEST_SAYS = {
    "level0_notebook": "no tests ran in 0.01s\n",
    "level1_devops/tests": "5 passed in 1.0s\n",
    "level2_pipelines/tests": "7 passed in 9.0s\n",
}


@pytest.fixture(autouse=True)
def few_birds(monkeypatch):
    """Five held-out birds instead of 69: the probes read them the same, in a fifth of the time."""
    few = held_out_rows().head(5)
    monkeypatch.setattr("workshop.scorecard.table.held_out_rows", lambda: few)


def test_side_by_side_runs_the_levels_at_once():
    """Three steps that each wait for the other two finish: they run at the same time."""
    meeting = threading.Barrier(3, timeout=5)

    results = side_by_side({lv: lambda lv=lv: (meeting.wait(), lv)[1] for lv in LEVELS})

    assert results == {lv: lv for lv in LEVELS}


def test_side_by_side_raises_only_after_every_step_finished():
    """A failing step's error comes out once the slower steps are done, none left running."""
    finished = []

    def slow() -> None:
        time.sleep(0.3)
        finished.append("slow")

    def failing() -> None:
        raise RuntimeError("level 1 failed")

    with pytest.raises(RuntimeError, match="level 1 failed"):
        side_by_side({"level 0": slow, "level 1": failing})

    assert finished == ["slow"]


def lab_with_tests(tmp_path, name: str = "lab") -> FakeLab:
    lab = FakeLab(tmp_path / name)
    lab.pytest_output = dict(PYTEST_SAYS)
    lab.pytest_output["level0_notebook"] = ""  # pytest's exit 0 with no summary: not measured
    return lab


@pytest.mark.timeout(120)
def test_run_fills_every_row_for_every_level(tmp_path):
    """The whole run gives every row, in the table's order, each with all three levels."""
    lab = lab_with_tests(tmp_path)
    card = quiet(lab)
    card.load_seconds, card.drift_window = 0.2, 20  # a short load, a small drifted window

    run(card)

    names = [name for name, _ in card.rows]
    assert len(names) == len(ROW_ORDER)
    assert [next(o for o in ROW_ORDER if n.startswith(o)) for n in names] == list(ROW_ORDER)
    assert all(set(cells) == set(LEVELS) for _, cells in card.rows)
    assert str(cells_of(card, "tests that guard the level")["level 2"]) == "✓ 7 passed"
    assert set(card.latency) == set(LEVELS)


@pytest.mark.timeout(120)
def test_run_starts_the_levels_tests_before_level2_trains(tmp_path):
    """Level 2's tests are already running when its first pipeline run starts."""
    lab = lab_with_tests(tmp_path)
    started = threading.Event()
    lab.on_pytest = lambda folder: started.set() if folder.startswith("level2") else None
    seen = []

    def level2(args):
        seen.append(started.wait(timeout=5))
        return lab.store.register()

    lab.level2 = level2
    card = quiet(lab)
    card.load_seconds, card.drift_window = 0.2, 20  # a short load, a small drifted window

    run(card)

    assert seen[0] is True


@pytest.mark.timeout(120)
def test_run_new_data_cells_follow_the_services(tmp_path):
    """Services that pick up a new model by themselves turn levels 0 and 1's new-data cells
    from ✗ to ✓ in the same run: the cells are read from the services, not written in."""
    cells = {}
    for follow in (False, True):
        lab = lab_with_tests(tmp_path, f"lab-{follow}")
        lab.follow = follow
        card = quiet(lab)
        card.load_seconds, card.drift_window = 0.2, 20
        run(card)
        cells[follow] = cells_of(card, NEW_DATA)

    assert [cells[False][lv].ok for lv in ("level 0", "level 1")] == [False, False]
    assert [cells[True][lv].ok for lv in ("level 0", "level 1")] == [True, True]


DEMO_ROWS = [
    "same model (vs level 1, held-out birds)",
    "bad requests (11 invalid payloads)",
    "health / ready / model endpoints",
    "what the service knows about its model",
    "serving at c=8 (0.2 s each)",
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("with_new_data", [False, True], ids=["default", "new-data"])
def test_demo_ends_with_a_table_of_what_it_ran(tmp_path, capsys, monkeypatch, with_new_data):
    """The demo trains each level once (and again on the new data only, if asked), numbers its
    steps, and its table holds the rows its own probes filled."""
    lab = FakeLab(tmp_path / "lab")
    monkeypatch.setattr("workshop.demo.LOAD_SECONDS", 0.2)
    steps = 6 if with_new_data else 5

    text = run_demo(Narrator(steps=steps), lab, with_new_data)

    said = capsys.readouterr().out
    trainings = 2 if with_new_data else 1
    assert lab.calls.count("level 0 train level0") == trainings
    assert lab.calls.count("level 1 train") == trainings
    assert lab.calls.count("level 2 run") == trainings
    assert re.findall(rf"step (\d) of {steps}", said) == [str(n) for n in range(1, steps + 1)]
    rows = [line.split(" | ")[0].lstrip("| ") for line in text.splitlines()[4:]]
    assert rows == DEMO_ROWS + (["new data arrives", "rollback"] if with_new_data else [])
    assert (tmp_path / "scorecard.md").read_text() == text
