"""The decision is one at a time across hosts: workers with state folders of their own (as in
containers) that share a PostgreSQL database exclude each other through an advisory lock,
which PostgreSQL frees when its holder dies. Each worker is a process of its own here."""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.team, pytest.mark.timeout(300)]


def worker(tmp_path, uri: str, name: str, hold_s: float, wait_s: float = 120):
    """A process holding the decision for `hold_s` seconds, from a state folder of its own."""
    env = os.environ | {
        "LEVEL2_STATE_DIR": str(tmp_path / name),
        "LEVEL2_DECISION_LOCK_URI": uri,
        "LEVEL2_DECISION_WAIT_S": str(wait_s),
        "LEVEL2_MODEL_NAME": "penguins-lock-test",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "level2_pipelines.tests.team.hold_decision", str(hold_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def said(process: subprocess.Popen, word: str, timeout_s: float = 60) -> float:
    """When the worker said it `word` (held, releasing): the time it printed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], deadline - time.monotonic())
        line = process.stdout.readline() if ready else ""
        if line.startswith(word):
            return float(line.split()[1])
        if not line and process.poll() is not None:
            break
    raise AssertionError(f"worker never said {word!r}: {process.stderr.read()}")


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_a_second_worker_waits_until_the_first_lets_go(tmp_path, new_database):
    uri = new_database("lock")
    first = worker(tmp_path, uri, "a", hold_s=4)
    try:
        said(first, "held")
        second = worker(tmp_path, uri, "b", hold_s=0)
        try:
            released = said(first, "releasing")
            taken = said(second, "held")
        finally:
            stop(second)
    finally:
        stop(first)

    assert taken >= released


def test_a_killed_holder_frees_the_decision_and_a_bounded_wait_names_it(tmp_path, new_database):
    """A wait that runs out names the holder (its host and pid) and how to free it; SIGKILL
    ends the holder's connection, and PostgreSQL frees its lock with it."""
    uri = new_database("lock")
    holder = worker(tmp_path, uri, "a", hold_s=300)
    try:
        said(holder, "held")
        waiter = worker(tmp_path, uri, "b", hold_s=0, wait_s=2)
        _, refusal = waiter.communicate(timeout=60)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        killed = time.time()
        after = worker(tmp_path, uri, "c", hold_s=0, wait_s=60)
        try:
            taken = said(after, "held")
        finally:
            stop(after)
    finally:
        stop(holder)

    assert waiter.returncode != 0
    assert "still held after 2 s" in refusal and f"pid {holder.pid}" in refusal
    assert "pg_terminate_backend(" in refusal and "Traceback" not in refusal
    assert taken - killed < 30  # the interpreter's start-up, not a lock left behind
