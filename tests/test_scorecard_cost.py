"""What each level costs is measured, not declared: the code counts follow the files, the
machine figures follow real processes (children of this test, named as a level's), the people
rows follow what the scenarios ran and what they saw the services do, and the report charts
cost beside benefit. One slow test reads the real level 1 (`make test-lab`)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scorecard_fakes import FakeLab, cells_of, fake_services, quiet, trained_lab
from workshop.lab import Lab, held_out_rows
from workshop.scorecard.cells import (
    AT_REST,
    CODE,
    DEPENDENCIES,
    DISK,
    LEVELS,
    PEOPLE_NEW_DATA,
    PEOPLE_ROLLBACK,
    RETRAINING,
    Cell,
)
from workshop.scorecard.machines import CpuMeter, at_rest, level_processes
from workshop.scorecard.render import cost_chart_svg, html_report
from workshop.scorecard.runner import new_data_and_rollback, run
from workshop.scorecard.scenarios.new_data import retraining
from workshop.scorecard.upkeep import count_code

# A child that does nothing, named as level 1's (the scorecard finds a level by its name).
IDLE = "import time; time.sleep(60)"
# A child that spends 0.5 CPU-seconds, however busy the machine, then ends.
BUSY = "import time\nwhile time.process_time() < 0.5: pass"


@pytest.fixture(autouse=True)
def few_birds(monkeypatch):
    """Five held-out birds instead of 69: the probes read them the same, in a fifth of the time."""
    few = held_out_rows().head(5)
    monkeypatch.setattr("workshop.scorecard.table.held_out_rows", lambda: few)


@pytest.fixture
def children():
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        started.append(subprocess.Popen([sys.executable, *args]))
        return started[-1]

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_count_code_skips_blank_and_comment_lines_and_keeps_tests_apart(tmp_path):
    """Blank and comment-only lines are not counted; tests/ and test_*.py count as tests; a
    notebook counts its code cells only; other files are not code."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "a.py").write_text('"""Doc."""\n\n# why\nx = 1  # what\n')
    (tmp_path / "tests" / "helpers.py").write_text("y = 2\n")
    (tmp_path / "test_b.py").write_text("def test():\n    assert True\n")
    notebook = {
        "cells": [
            {"cell_type": "markdown", "source": ["# Title\n", "words\n"]},
            {"cell_type": "code", "source": ["import os\n", "\n", "print(os.sep)\n"]},
        ]
    }
    (tmp_path / "n.ipynb").write_text(json.dumps(notebook))
    (tmp_path / "README.md").write_text("prose\n" * 50)
    names = ("a.py", "tests/helpers.py", "test_b.py", "n.ipynb", "README.md")

    counted = count_code({name: tmp_path / name for name in names})

    assert (counted.code_lines, counted.test_lines, counted.files) == (4, 3, 4)


def test_level_processes_finds_a_levels_child_and_leaves_its_tests_out(children, tmp_path):
    """A child named as level 1's is level 1's, at rest: one process, its resident memory,
    even with a folder named after pytest in its command; a pytest run of level 1's tests is
    not what the level costs to run."""
    service = children("-c", IDLE, "level1_devops.serve", str(tmp_path / "pytest-of-root"))
    (tmp_path / "pytest").write_text(IDLE)
    children(
        "import runpy, sys; runpy.run_path(sys.argv[1])",
        str(tmp_path / "pytest"),
        "level1_devops/tests",
    )

    found = [p.pid for p in level_processes("level 1")]
    rest = at_rest(("level 1", "level 0"), 0.2)

    assert found == [service.pid]
    assert rest["level 1"].processes == 1 and rest["level 1"].rss_mb > 1
    assert rest["level 0"].processes == 0


def test_cpu_meter_counts_a_child_that_ended_inside_the_block(children):
    """A level's command that spends 0.5 CPU-seconds and ends is counted (up to its last
    sample, 0.1 s apart); one of another level is not."""
    with CpuMeter("level 2").measuring() as usage:
        children("-c", BUSY, "level2_pipelines.pipeline_cli").wait()
        children("-c", BUSY, "level0_notebook.run").wait()

    assert 0.3 <= usage.cpu_s <= 0.7
    assert usage.wall_s >= usage.cpu_s


def test_retraining_records_what_the_state_folder_grew_by(tmp_path):
    """A retraining that writes a 1 MB model into level 1's folder grew it by 1 MB."""
    card = quiet(FakeLab(tmp_path / "lab"))

    with retraining(card, "level 1"):
        (card.lab.root / "level1").mkdir(exist_ok=True)
        (card.lab.root / "level1" / "model.skops").write_bytes(b"\0" * 1_000_000)

    assert card.retraining["level 1"].grew_bytes == 1_000_000


def run_fake(tmp_path: Path, follow: bool):
    lab = FakeLab(tmp_path / f"lab-{follow}")
    lab.pytest_output = {
        "level1_devops/tests": "5 passed\n",
        "level2_pipelines/tests": "7 passed\n",
    }
    lab.follow = follow
    card = quiet(lab)
    card.load_seconds, card.drift_window = 0.2, 20
    run(card)
    return card


@pytest.mark.timeout(180)
def test_run_counts_a_restart_only_where_the_service_did_not_follow(tmp_path):
    """The people rows come from the run: level 2's one command is the one it ran; levels 0
    and 1 need a restart declared only when this run saw their service keep the old model."""
    stays, follows = run_fake(tmp_path, follow=False), run_fake(tmp_path, follow=True)

    new_data = {
        follow: cells_of(card, PEOPLE_NEW_DATA)
        for follow, card in ((False, stays), (True, follows))
    }

    assert str(new_data[False]["level 2"]) == (
        "1 command (run here: make level2 BATCH=FILE), 0 decisions"
    )
    assert "declared: make level1-serve (restart" in str(new_data[False]["level 1"])
    assert "declared" not in str(new_data[True]["level 1"])
    assert str(new_data[True]["level 1"]).startswith(
        "2 commands (run here: python -m level1_devops.train --new-batch FILE; make level1-handoff)"
    )
    assert stays.costs["level 0"]["commands: new batch served"] == 2
    assert follows.costs["level 0"]["commands: new batch served"] == 1
    rollback = cells_of(stays, PEOPLE_ROLLBACK)
    assert str(rollback["level 2"]) == "1 command (run here: make level2-rollback), 0 decisions"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kept", [False, True])
def test_level0_rollback_steps_follow_what_is_on_disk(tmp_path, kept):
    """A level 0 that kept its previous pickle is rolled back by copying it, no decision; one
    that did not must retrain on data someone has to remember."""
    lab = trained_lab(tmp_path)
    lab.keep_previous_pickle = kept
    card = quiet(lab)

    with fake_services(lab, lab.champion) as urls:
        new_data_and_rollback(card, urls)
    steps = card.person("rollback", "level 0")

    assert steps.declared[0] == (
        "cp KEPT.pkl model.pkl" if kept else "python -m level0_notebook.run on the old data"
    )
    assert len(steps.decisions) == (0 if kept else 1)
    assert steps.typed == []


@pytest.mark.timeout(180)
def test_run_gives_every_cost_row_with_its_units(tmp_path):
    """Each cost row has a cell for every level, in its units; the scripted levels' services
    run in this test's own process, so no process of theirs is found at rest."""
    card = run_fake(tmp_path, follow=False)

    rest, retrain = cells_of(card, AT_REST), cells_of(card, RETRAINING)
    disk, code, deps = cells_of(card, DISK), cells_of(card, CODE), cells_of(card, DEPENDENCIES)

    for level in LEVELS:
        assert re.fullmatch(r"0 processes, 0 MB resident, 0\.0% of a core", rest[level].text)
        assert re.fullmatch(r"\d+\.\d CPU-s in \d+\.\d s wall", retrain[level].text)
        assert re.fullmatch(r"[+-]\d+\.\d\d MB", disk[level].text)
        assert re.fullmatch(r"[\d,]+ / [\d,]+ lines \(\d+ Python files\)", code[level].text)
        to_run, with_dev = map(
            int, re.fullmatch(r"(\d+) to run, (\d+) with the dev tools", deps[level].text).groups()
        )
        assert 0 < to_run < with_dev
    assert card.costs["level 2"]["lines of code"] > card.costs["level 1"]["lines of code"]


def test_report_charts_cost_beside_benefit():
    """The HTML report holds an inline SVG: a panel of ✓ counts from the rows, and a panel per
    cost figure with each level's value written by its bar."""
    rows = [
        ("a", {"level 0": Cell(False, ""), "level 1": Cell(True, ""), "level 2": Cell(True, "")}),
        ("b", {"level 0": Cell(None, ""), "level 1": Cell(False, ""), "level 2": Cell(True, "")}),
    ]
    costs = {lv: {"lines of code": 100 * (i + 1)} for i, lv in enumerate(LEVELS)}

    page = html_report(rows, {}, "now", costs)
    svg = cost_chart_svg(rows, costs)

    assert svg in page and svg.startswith("<svg")
    assert svg.count("<rect") == 6
    benefit, cost = svg.split("lines of code</text>")
    assert [re.findall(r">(\d+)</text>", benefit)[i] for i in (0, 1, 2)] == ["0", "1", "2"]
    assert re.findall(r">(\d+)</text>", cost) == ["100", "200", "300"]


# ------------------------------------------------------------------------ the real levels


@pytest.mark.lab
def test_real_level1_costs_memory_at_rest_and_cpu_to_retrain(tmp_path):
    """The real level 1, trained and served in a lab: its service is one process holding tens
    of MB at rest, and its retraining spends CPU-seconds in processes of its own."""
    lab = Lab(tmp_path / "lab")
    lab.train_level1()
    lab.hand_off_level1()

    with CpuMeter("level 1").measuring() as usage:
        lab.train_level1()
    with lab.services(("level 1",)):
        rest = at_rest(("level 1",), 1.0)["level 1"]

    assert usage.cpu_s > 0.5
    assert rest.processes >= 1 and rest.rss_mb > 30
