"""The root conftest's grouping, run for real: pytest-xdist on two workers over a small suite.

Each test of the generated suite writes which worker ran it; the suite's own conftest defines
stand-ins for the expensive session fixtures under their real names, so the root conftest
(copied beside it) groups them as it groups the real ones."""

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from shared.paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

FIXTURES = """
import os
from pathlib import Path

import pytest

RAN = Path(__file__).parent / "ran"


@pytest.fixture(scope="session")
def prefect_api():
    return "harness"


@pytest.fixture(scope="session")
def level0_output():
    return "notebook"


@pytest.fixture(autouse=True)
def record(request):
    RAN.mkdir(exist_ok=True)
    with (RAN / os.environ.get("PYTEST_XDIST_WORKER", "none")).open("a") as out:
        out.write(request.node.name + "\\n")
"""

# Eight tests in four modules on each fixture, and eight plain ones: spread over both workers
# unless something holds each group together.
MODULE = """
import pytest

@pytest.mark.parametrize("n", range(2))
def test_harness(prefect_api, n):
    pass

@pytest.mark.parametrize("n", range(2))
def test_notebook(level0_output, n):
    pass

@pytest.mark.parametrize("n", range(2))
def test_plain(n):
    pass
"""

# Two operations, one test: schemathesis on pytest 9.2 gives both the same id.
SCHEMATHESIS = """
import schemathesis
from hypothesis import settings

paths = {
    p: {"get": {"responses": {"200": {"description": "ok"}}}} for p in ("/first", "/second")
}
schema = schemathesis.openapi.from_dict(
    {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": paths}
)

@schema.parametrize()
@settings(max_examples=1, database=None)
def test_operation(case, prefect_api):
    pass
"""


def suite(folder: Path, *extra: tuple[str, str]) -> Path:
    (folder / "conftest.py").write_text((REPO_ROOT / "conftest.py").read_text())
    tests = folder / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text(FIXTURES)
    for n in range(4):
        (tests / f"test_m{n}.py").write_text(MODULE)
    for name, text in extra:
        (tests / name).write_text(text)
    return folder


def run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=150,
    )


def workers_of(folder: Path) -> dict[str, set[str]]:
    """Which workers ran the tests of each kind (the test's name before its parameters)."""
    seen = defaultdict(set)
    for log in (folder / "tests" / "ran").iterdir():
        for name in log.read_text().split():
            seen[name.split("[")[0]].add(log.name)
    return seen


def test_grouping_keeps_each_shared_fixture_on_one_worker(tmp_path):
    """With --dist loadgroup, the tests on one expensive fixture all run on one worker."""
    folder = suite(tmp_path)

    done = run(folder, "-n", "2", "--dist", "loadgroup")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "24 passed" in done.stdout
    seen = workers_of(folder)
    assert len(seen["test_harness"]) == 1, seen
    assert len(seen["test_notebook"]) == 1, seen


def test_grouping_absent_spreads_the_same_tests(tmp_path):
    """Without grouping (--dist load) the same tests spread: the check above can fail."""
    folder = suite(tmp_path)

    done = run(folder, "-n", "2", "--dist", "load")

    assert done.returncode == 0, done.stdout + done.stderr
    seen = workers_of(folder)
    assert seen["test_harness"] == {"gw0", "gw1"}, seen


def test_grouping_runs_every_operation_of_one_id(tmp_path):
    """Schemathesis's operations share one id, yet each runs, on its fixture's worker."""
    folder = suite(tmp_path, ("test_api.py", SCHEMATHESIS))

    done = run(folder, "-n", "2", "--dist", "loadgroup")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "26 passed" in done.stdout
    ran = "".join(log.read_text() for log in (folder / "tests" / "ran").iterdir())
    assert "test_operation[GET /first]" in ran
    assert "test_operation[GET /second]" in ran
    assert len(workers_of(folder)["test_operation"] | workers_of(folder)["test_harness"]) == 1


def test_grouping_refuses_two_tests_of_one_id(tmp_path):
    """The same test collected twice is refused, as xdist's scheduler would run it once."""
    folder = suite(tmp_path)

    done = run(folder, "--keep-duplicates", "tests/test_m0.py", "tests/test_m0.py")

    assert done.returncode != 0
    assert "tests share an id" in done.stdout + done.stderr
