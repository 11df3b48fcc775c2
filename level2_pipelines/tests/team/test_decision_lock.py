"""The decision is one at a time across hosts: workers with state folders of their own (as in
containers) that share a PostgreSQL database exclude each other through an advisory lock,
which PostgreSQL frees when its holder dies. Each worker is a process of its own here."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = [pytest.mark.team, pytest.mark.timeout(600)]


def worker(tmp_path, uri: str, name: str, hold_s: float | str, wait_s: float = 120):
    """A process holding the decision for `hold_s` seconds (or until that file exists), from a
    state folder of its own."""
    env = os.environ | {
        "LEVEL2_STATE_DIR": str(tmp_path / name),
        "LEVEL2_DECISION_LOCK_URI": uri,
        "LEVEL2_DECISION_WAIT_S": str(wait_s),
        "LEVEL2_MODEL_NAME": "penguins-lock-test",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "level2_pipelines.tests.team.hold_decision", str(hold_s)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.lines = []  # what it printed so far, read as it comes by a thread of its own
    threading.Thread(target=lambda: process.lines.extend(process.stdout), daemon=True).start()
    return process


def said(process: subprocess.Popen, word: str, timeout_s: float = 60) -> float:
    """When the worker said it `word` (waiting, held, releasing): the time it printed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in list(process.lines):
            if line.startswith(word):
                return float(line.split()[1])
        if process.poll() is not None and not any(x.startswith(word) for x in process.lines):
            time.sleep(0.2)  # the reader may still be taking the last lines
            if not any(x.startswith(word) for x in process.lines):
                break
        time.sleep(0.05)
    raise AssertionError(f"worker never said {word!r}: {process.stderr.read()}")


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_a_second_worker_waits_until_the_first_lets_go(tmp_path, new_database):
    uri = new_database("lock")
    release = tmp_path / "release"
    first = worker(tmp_path, uri, "a", hold_s=str(release))
    try:
        said(first, "held", timeout_s=120)
        second = worker(tmp_path, uri, "b", hold_s=0)
        try:
            asked = said(second, "waiting", timeout_s=120)
            time.sleep(2)  # long enough for it to take a lock nobody held
            release.touch()
            released = said(first, "releasing")
            taken = said(second, "held")
        finally:
            stop(second)
    finally:
        stop(first)

    assert asked < released, "the second asked only after the first let go: nothing was tested"
    assert taken >= released


def test_a_killed_holder_frees_the_decision_and_a_bounded_wait_names_it(tmp_path, new_database):
    """A wait that runs out names the holder (its host and pid) and how to free it; SIGKILL
    ends the holder's connection, and PostgreSQL frees its lock with it."""
    uri = new_database("lock")
    holder = worker(tmp_path, uri, "a", hold_s=300)
    try:
        said(holder, "held", timeout_s=120)
        waiter = worker(tmp_path, uri, "b", hold_s=0, wait_s=2)
        waiter.wait(timeout=120)
        refusal = waiter.stderr.read()
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
