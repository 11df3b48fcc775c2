"""The lab runs level 2 as `make level2-up` gives a workshop: its own Prefect server and the warm
worker, which `make level2` finds and uses, and which the lab stops when it closes. Real level 2,
real processes (`make test-lab`)."""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from shared.servers import stop_group
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


# A command holding the lab's Prefect server and warm worker, as the scorecard, the demo and the
# drills do, until it is stopped; `stop_on_sigterm()` is what their entry points call first.
HOLDS_THE_LAB = """
import sys, time
from pathlib import Path
from workshop.lab import Lab, stop_on_sigterm
stop_on_sigterm()
with Lab(Path(sys.argv[1])).prefect_server() as url:
    print(url, flush=True)
    time.sleep(600)
"""


@pytest.mark.lab
def test_lab_stops_its_servers_on_sigterm_as_on_ctrl_c(tmp_path):
    """SIGTERM (a CI cancel, `timeout`) stops the lab's Prefect server and warm worker too."""
    servers = tmp_path / "lab" / "level2" / "servers"
    command = [sys.executable, "-c", HOLDS_THE_LAB, str(tmp_path / "lab")]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        url = holder.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"the lab did not start: {url!r}"
        supervisor = int((servers / "warm.pid").read_text())

        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=60)

        assert not alive(supervisor), "the warm worker outlived the command"
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/api/health", timeout=2)
    finally:
        stop_group(holder)
