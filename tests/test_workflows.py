"""CI workflows call the same make targets a person runs, so CI and the README cannot drift; and
they follow the conventions people expect of a workflow: read-only tokens, superseded runs
cancelled, dependencies cached on the lock, and a weekly try of the newest versions."""

import re
from pathlib import Path

import jinja2
import pytest
import yaml

from tests.makefiles import makefile_text
from tools.staging import LEVELS

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
COPY_WORKFLOWS = ROOT / "templates" / "common" / ".github" / "workflows"


def every_workflow() -> dict[str, dict]:
    """Ours, and each level's copy's as `make template` renders it, parsed."""
    found = {p.name: yaml.safe_load(p.read_text()) for p in WORKFLOWS}
    for path in sorted(COPY_WORKFLOWS.iterdir()):
        text = path.read_text()
        for level in LEVELS:
            # copier renders the .jinja files and copies the others as they are.
            if path.suffix == ".jinja":
                text = jinja2.Template(path.read_text()).render(level=level, package_name="x")
            found[f"level{level} copy: {path.name.removesuffix('.jinja')}"] = yaml.safe_load(text)
    return found


ALL_WORKFLOWS = every_workflow()


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


@pytest.mark.parametrize("name", ALL_WORKFLOWS)
def test_workflow_token_reads_only_unless_a_job_must_push(name):
    """The token can read the code and no more; only the lock upgrade's job pushes a branch."""
    workflow = ALL_WORKFLOWS[name]

    assert workflow["permissions"] == {"contents": "read"}
    for job_name, job in workflow["jobs"].items():
        if name.endswith("lock-upgrade.yml"):
            assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
        else:
            assert "permissions" not in job, f"{name}: {job_name}"


@pytest.mark.parametrize("name", ALL_WORKFLOWS)
def test_workflow_cancels_the_run_a_newer_one_supersedes(name):
    """One run per workflow and branch: a newer one cancels it (on main, deploys queue instead)."""
    concurrency = ALL_WORKFLOWS[name]["concurrency"]

    assert "github.workflow" in concurrency["group"]
    assert concurrency["cancel-in-progress"] in (True, "${{ github.event_name == 'pull_request' }}")


@pytest.mark.parametrize("name", ALL_WORKFLOWS)
def test_workflow_caches_the_downloads_on_the_locks_hash(name):
    """Every job that runs make (which builds .venv from the lock) first restores uv's download
    cache, keyed on requirements.lock, so an unchanged lock downloads nothing."""
    for job_name, job in ALL_WORKFLOWS[name]["jobs"].items():
        steps = job["steps"]
        first_make = next(i for i, s in enumerate(steps) if s.get("run", "").startswith("make"))
        caches = [s for s in steps[:first_make] if s.get("uses", "").startswith("actions/cache@")]

        assert len(caches) == 1, f"{name}: {job_name}"
        assert caches[0]["with"]["path"] == "~/.cache/uv"
        assert "hashFiles('requirements.lock')" in caches[0]["with"]["key"]


def test_lock_upgrade_tries_the_newest_versions_weekly_and_reports_on_a_branch():
    """Weekly and by hand: a new lock, checked on every platform, tested, and offered as a pull
    request from its own branch even when the tests fail (the title says which)."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "lock-upgrade.yml").read_text())
    (job,) = workflow["jobs"].values()
    (cron,) = workflow[True]["schedule"]  # YAML reads the key `on` as True
    (offer,) = [s for s in job["steps"] if "create-pull-request" in s.get("uses", "")]

    assert re.fullmatch(r"\d+ \d+ \* \* [0-6]", cron["cron"])
    assert "workflow_dispatch" in workflow[True]
    assert run_steps(ROOT / ".github" / "workflows" / "lock-upgrade.yml") == [
        "make lock-upgrade",
        "make lock-check",
        "make test",
    ]
    assert offer["with"]["branch"] == "lock-upgrade"
    assert "!cancelled()" in offer["if"] and "steps.test.outcome" in offer["with"]["title"]


def test_a_copy_upgrades_its_lock_the_way_we_do():
    """The copies' weekly lock upgrade is ours, word for word (their Makefile has its targets)."""
    ours = ROOT / ".github" / "workflows" / "lock-upgrade.yml"

    assert (COPY_WORKFLOWS / "lock-upgrade.yml").read_text() == ours.read_text()
