"""The lab runs level 2 as `make level2-up` gives a workshop: its own Prefect server and the warm
worker, which `make level2` finds and uses, and which the lab stops when it closes. Real level 2,
real processes (`make test-lab`)."""

import json
import os
import time

import pytest

from workshop.lab import Lab

READY_WITHIN_S = 120  # the worker imports GX, MLflow and scikit-learn on a busy 2-core machine


def wait_for_file(path, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} not written within {seconds:.0f} s"
        time.sleep(0.5)
    return json.loads(path.read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.lab
def test_level2_runs_in_the_labs_warm_worker_and_it_stops_with_the_server(tmp_path):
    lab = Lab(tmp_path / "lab")
    servers = lab.root / "level2" / "servers"
    with lab.prefect_server() as url:
        assert url.startswith("http://127.0.0.1:")
        worker = wait_for_file(servers / "warm-worker.json", READY_WITHIN_S)
        supervisor = int((servers / "warm.pid").read_text())

        first, second = lab.run_level2(), lab.run_level2("--force")

    for run in (first, second):
        assert run.returncode == 0, run.stderr[-500:]
        assert f"running in the warm worker (pid {worker['pid']}" in run.stdout
    assert "v1 is now champion" in first.stdout and "v2 is now champion" in second.stdout
    assert not alive(supervisor) and not alive(worker["pid"])
    assert not (servers / "warm.pid").exists()
