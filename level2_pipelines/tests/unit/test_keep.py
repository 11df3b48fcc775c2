"""`keep` (ops/processes.py) restarts the process it supervises when it dies, and when it stops
beating; it stops with it when asked. Real processes."""

import json
import os
import signal
import subprocess
import sys
import time

from level2_pipelines.ops.processes import kept_alive

# Beats every 0.1 s.
BEATER = """
import sys, time
from pathlib import Path
from level2_pipelines.ops.processes import write_heartbeat
while True:
    write_heartbeat(Path(sys.argv[1]))
    time.sleep(0.1)
"""


def beat_of(heartbeat) -> dict | None:
    try:
        return json.loads(heartbeat.read_text())
    except (FileNotFoundError, ValueError):
        return None


def wait_for_a_beat(heartbeat, not_from: int | None, timeout: float = 30) -> int:
    """The pid of a fresh beat from another process than `not_from`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        beat = beat_of(heartbeat)
        if beat and beat["pid"] != not_from and time.time() - beat["beat"] < 1:
            return beat["pid"]
        time.sleep(0.1)
    raise AssertionError(f"no fresh beat from a process other than {not_from} in {timeout} s")


def test_keep_restarts_a_killed_process_and_one_that_stops_beating(tmp_path):
    """SIGKILL: a new process beats within seconds; a hung one (no beat for `--stale-s`) is
    stopped and a new one beats; SIGTERM to the group stops the supervisor and its child."""
    heartbeat = tmp_path / "beat.json"
    command = kept_alive([sys.executable, "-c", BEATER, str(heartbeat)], heartbeat)
    command[command.index("--") : command.index("--")] = ["--stale-s", "2"]
    log = (tmp_path / "keep.log").open("w")
    keeper = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first = wait_for_a_beat(heartbeat, None)

        os.kill(first, signal.SIGKILL)
        second = wait_for_a_beat(heartbeat, first)
        os.kill(second, signal.SIGSTOP)  # hung: alive, not beating
        third = wait_for_a_beat(heartbeat, second)

        said = (tmp_path / "keep.log").read_text()
        assert f"(pid {first}) ended unasked (killed by SIGKILL)" in said
        assert f"(pid {second}) stopped beating" in said
        assert third not in (first, second)
    finally:
        os.killpg(keeper.pid, signal.SIGTERM)
        keeper.wait(timeout=30)
    assert keeper.returncode == 0
