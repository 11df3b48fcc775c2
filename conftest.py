"""How the suite shares the machine's cores (`make test` runs pytest-xdist: `-n 2 --dist
loadgroup`).

A worker makes a session fixture the first time one of its tests asks for it. Tests that
share an expensive one are kept on one worker, so it is made once, not once per worker:
Prefect's test harness (a server started in a subprocess, 15-35 s here) and the executed
level 0 notebook (~20 s). Grouping goes by the fixtures a test uses, so a new test that
asks for one of them joins its group without a mark. The levels' own folders know nothing
of this: a copied level (`make template`) runs its tests the plain way.

Two things pytest 9.2 and pytest-xdist 3.8 (the latest) do not yet agree on are bridged here,
and checked: xdist's `xdist_group` mark sets an attribute pytest 9 no longer reads, so the
group is written into the test id the way xdist's scheduler reads it ("id@group"); and
schemathesis gives every API operation of a test the same id, which that scheduler keys on.
"""

from collections import Counter

import pytest
from _pytest.nodeid import coerce_node_id  # pytest 9's structured test ids

SHARED_ON_ONE_WORKER = {
    "prefect_api": "prefect-harness",
    "level0_output": "level0-notebook",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # Schemathesis names its tests "test[POST /predict]" but leaves the id bare.
        operation = getattr(item, "operation_label", None)
        if operation and not item.nodeid.endswith("]"):
            item._id = item._id.with_params(operation)
    # In xdist's workers `dist` reads "no"; they get `loadgroup` set instead.
    if config.getoption("dist", "no") == "loadgroup" or getattr(config.option, "loadgroup", False):
        for item in items:
            group = next(
                (g for f, g in SHARED_ON_ONE_WORKER.items() if f in item.fixturenames), None
            )
            if group:
                item._id = coerce_node_id(f"{item.nodeid}@{group}")
    ids = Counter(item.nodeid for item in items)
    if twice := sorted(nodeid for nodeid, count in ids.items() if count > 1):
        # The scheduler keys tests by id: a shared id would run once and pass.
        raise pytest.UsageError(f"tests share an id, so some would not run: {twice}")
