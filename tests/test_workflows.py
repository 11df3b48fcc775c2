"""CI workflows call the same make targets a person runs, so CI and the README cannot drift."""

import re
from pathlib import Path

import pytest
import yaml

from tests.makefiles import makefile_text

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def makefile_targets() -> dict[str, list[str]]:
    """Each Makefile target and its prerequisites (variables such as $(STAMP) left out)."""
    targets = {}
    for line in makefile_text(ROOT / "Makefile").splitlines():
        if match := re.match(r"^([a-zA-Z0-9_-]+):(?!=)([^#]*)", line):
            targets[match[1]] = [p for p in match[2].split() if p != "|" and p[0] != "$"]
    return targets


def run_steps(workflow: Path) -> list[str]:
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    return [step["run"] for job in jobs.values() for step in job["steps"] if "run" in step]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs_only_make_targets_that_exist(workflow):
    """Every `run:` step is `make <target>` for a target the Makefile defines."""
    targets = makefile_targets()

    for command in run_steps(workflow):
        words = command.split()
        assert words[0] == "make", f"{workflow.name}: {command!r} is not a make target"
        assert all(t in targets for t in words[1:]), f"{workflow.name}: {command!r}"


def test_level1_workflow_runs_what_make_level1_runs():
    """The level 1 workflow runs each step of `make level1`, in order, and builds the image."""
    targets = makefile_targets()
    steps = [c.split()[1] for c in run_steps(ROOT / ".github" / "workflows" / "level1.yml")]

    level1_steps = [s for s in steps if s in targets["level1"]]

    assert level1_steps == targets["level1"]
    assert "level1-image" in steps


def test_level2_workflow_tests_on_pull_requests_and_publishes_on_main():
    """Pull requests run the level 2 lint, tests and a pipeline run; main also publishes."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "level2.yml").read_text())
    jobs = workflow["jobs"]
    test_steps = [s["run"] for s in jobs["test"]["steps"] if "run" in s]
    deploy_steps = [s["run"] for s in jobs["deploy"]["steps"] if "run" in s]

    assert "pull_request" in workflow[True]  # YAML reads the key `on` as True
    assert test_steps == ["make level2-lint", "make level2-test", "make level2"]
    assert deploy_steps == ["make level2-publish"]
    assert jobs["deploy"]["needs"] == "test"
    assert "refs/heads/main" in jobs["deploy"]["if"]


def test_root_workflow_runs_what_ci_run_runs():
    """The root workflow runs, on every pull request and on main, the make targets of `.ci/run`."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_run = [line for line in lines if line.startswith("make ")]

    assert "pull_request" in workflow[True]  # YAML reads the key `on` as True
    assert workflow[True]["push"]["branches"] == ["main"]
    assert run_steps(ROOT / ".github" / "workflows" / "ci.yml") == ci_run
