"""How the suite shares the machine's cores (`make test` runs pytest-xdist: `-n 2 --dist
loadgroup`).

A worker makes a session fixture the first time one of its tests asks for it. Tests that
share an expensive one are kept on one worker, so it is made once, not once per worker:
Prefect's test harness (a server started in a subprocess, 15-35 s here) and the executed
level 0 notebook (~20 s). Grouping goes by the fixtures a test uses, so a new test that
asks for one of them joins its group without a mark. The levels' own folders know nothing
of this: a copied level (`make template`) runs its tests the plain way.

It goes through pytest-xdist's public hooks only. xdist's own `xdist_group` mark cannot carry
the group with pytest 9.2: xdist 3.8 (the latest) writes it into a test attribute pytest 9.2 no
longer reads, so the mark is silently ignored (pytest-dev/pytest-xdist#1386, open). Instead each
worker writes, when it has collected, one scheduling key per test ("id@group" where it has a
group) into a file the controller named for it (`pytest_configure_node`), and the controller's
scheduler (`pytest_xdist_make_scheduler`: xdist's own loadgroup scheduler) reads the keys in
place of the bare ids. A test's `xdist_group` mark counts too.

The key also tells apart what one id names twice: schemathesis 4.32 on pytest 9.2 gives every
API operation of a test the same id ("test", where its name is "test[POST /predict]"), and the
scheduler finds tests by key; two tests with one key would run once and pass, so that fails.
"""

import json
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from xdist.scheduler import LoadGroupScheduling

from shared.paths import state_dir

SHARED_ON_ONE_WORKER = {
    "prefect_api": "prefect-harness",
    "level0_output": "level0-notebook",
}
KEYS_FILE = "penguins_scheduling_keys"  # the name in xdist's workerinput
KEYS_FOLDER = pytest.StashKey[tempfile.TemporaryDirectory]()


def scheduling_key(item: pytest.Item) -> str:
    """The test's id, with the parameters its name has and its id lacks, then "@group"."""
    parent_id, _, last = item.nodeid.rpartition("::")
    key = item.nodeid if last == item.name or not parent_id else f"{parent_id}::{item.name}"
    groups = {g for fixture, g in SHARED_ON_ONE_WORKER.items() if fixture in item.fixturenames}
    groups |= {
        str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for mark in item.iter_markers("xdist_group")
    }
    return f"{key}@{'_'.join(sorted(groups))}" if groups else key


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keys = Counter(scheduling_key(item) for item in items)
    if twice := sorted(key for key, count in keys.items() if count > 1):
        raise pytest.UsageError(f"tests share an id, so some would not run: {twice}")


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reports the collection
def pytest_collection_finish(session: pytest.Session) -> None:
    if path := getattr(session.config, "workerinput", {}).get(KEYS_FILE):
        Path(path).write_text(json.dumps([scheduling_key(item) for item in session.items]))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """Name, for each worker the controller starts, the file its scheduling keys go to."""
    if KEYS_FOLDER not in node.config.stash:
        state_dir().mkdir(parents=True, exist_ok=True)
        node.config.stash[KEYS_FOLDER] = tempfile.TemporaryDirectory(
            prefix="pytest-keys-", dir=state_dir()
        )
    folder = Path(node.config.stash[KEYS_FOLDER].name)
    node.workerinput[KEYS_FILE] = str(folder / f"{node.gateway.id}.json")


class FixtureGroupScheduling(LoadGroupScheduling):
    """xdist's loadgroup scheduler, fed each worker's scheduling keys instead of its bare ids.

    It sends tests to workers by their index in the collection, so the keys only decide which
    tests go together; reports keep the tests' own ids."""

    def add_node_collection(self, node, collection) -> None:
        keys = json.loads(Path(node.workerinput[KEYS_FILE]).read_text())
        if len(keys) != len(collection):
            raise pytest.UsageError(
                f"worker {node.gateway.id} collected {len(collection)} tests but wrote "
                f"{len(keys)} scheduling keys: both should come from one collection"
            )
        super().add_node_collection(node, keys)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log) -> LoadGroupScheduling | None:
    if config.getvalue("dist") == "loadgroup":
        return FixtureGroupScheduling(config, log)
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    if KEYS_FOLDER in config.stash:
        config.stash[KEYS_FOLDER].cleanup()
