"""The incoming watcher survives the file system: a directory, a FIFO or a link under a batch's
name, a writer that pauses, a file over the size limit, and an error while sending."""

import json
import os
import threading
import time

import pytest

from level2_pipelines import watcher
from level2_pipelines.ops import processes
from level2_pipelines.ops.processes import heartbeat_problem
from level2_pipelines.watcher import settled_files


def test_settled_files_skips_what_is_not_a_regular_file_and_says_so_once(tmp_path, capsys):
    """A directory, a FIFO and a symbolic link named like batches are never taken (a FIFO is
    never opened: it would block), and each is named once with why."""
    (tmp_path / "export.csv").mkdir()
    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "real.csv").write_text("species\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    seen, told = {}, set()

    for _ in range(3):
        settled = settled_files(tmp_path, seen, told=told)

    assert settled == [tmp_path / "real.csv"]
    said = capsys.readouterr().out
    for name, why in (
        ("export.csv", "a directory"),
        ("pipe.csv", "a FIFO"),
        ("link.csv", "a symbolic link"),
    ):
        assert said.count(f"{name} is {why}") == 1, said


def test_settled_files_waits_for_a_writer_that_pauses_longer_than_a_poll(tmp_path):
    """A file unchanged over one poll is not taken before it has held still for `settle_s`."""
    path = tmp_path / "daily.csv"
    path.write_text("species\n")
    seen = {}

    first = settled_files(tmp_path, seen, settle_s=0.5)
    paused = settled_files(tmp_path, seen, settle_s=0.5)  # the writer pauses: same size, time
    time.sleep(0.6)
    held_still = settled_files(tmp_path, seen, settle_s=0.5)

    assert (first, paused, held_still) == ([], [], [path])


def test_settled_files_quarantines_a_file_over_the_size_limit(tmp_path, capsys):
    """A file larger than `max_bytes` is moved to the quarantine folder with its reason."""
    incoming, quarantine = tmp_path / "incoming", tmp_path / "quarantine"
    incoming.mkdir()
    (incoming / "huge.csv").write_bytes(b"x" * 2048)
    seen = {}

    settled_files(incoming, seen, max_bytes=1024, quarantine=quarantine)

    assert not (incoming / "huge.csv").exists()
    assert (quarantine / "huge.csv").stat().st_size == 2048
    reason = (quarantine / "huge.csv.reason.txt").read_text()
    assert "2,048 bytes" in reason and "1,024" in reason
    assert "huge.csv is 2,048 bytes" in capsys.readouterr().out


def test_watcher_goes_on_after_an_error_and_beats(tmp_path, monkeypatch, capsys):
    """An error while sending one batch is said and the watcher watches on; every poll it
    writes its heartbeat, which `make level2-status` reads."""
    monkeypatch.setattr(watcher, "WATCH_EVERY_S", 0.05)
    sent = []

    def hand_over(name: str, digest: str) -> str:
        if name == "first.csv":
            raise ConnectionError("the Prefect API went away")
        sent.append(name)
        return watcher.Run("sent")

    monkeypatch.setattr(watcher, "hand_over", hand_over)
    heartbeat = tmp_path / "servers" / "watcher.json"
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stop = threading.Event()
    watching = threading.Thread(
        target=watcher.watch_incoming, args=(incoming, stop), kwargs={"heartbeat": heartbeat}
    )
    watching.start()
    (incoming / "first.csv").write_text("species\nAdelie\n")
    time.sleep(0.5)
    (incoming / "second.csv").write_text("species\nGentoo\n")
    time.sleep(0.5)
    stop.set()
    watching.join(timeout=5)

    assert sent == ["second.csv"]
    said = capsys.readouterr().out
    assert "first.csv not sent (ConnectionError: the Prefect API went away); trying again" in said
    assert said.count("first.csv not sent") == 3 and "gave up after 3 tries" in said
    beat = json.loads(heartbeat.read_text())
    assert beat["pid"] == os.getpid() and time.time() - beat["beat"] < 5


@pytest.mark.parametrize(("age_s", "alive"), [(1.0, True), (120.0, False)])
def test_watcher_health_reads_its_heartbeat(tmp_path, age_s, alive):
    """A heartbeat older than a few polls means the watcher is dead, whatever its process."""
    heartbeat = tmp_path / "watcher.json"
    heartbeat.write_text(json.dumps({"pid": os.getpid(), "beat": time.time() - age_s}))

    problem = heartbeat_problem(heartbeat)

    assert (problem is None) == alive, problem


def test_watcher_that_dies_of_an_error_outside_a_poll_starts_again(tmp_path, monkeypatch, capsys):
    """An error the poll does not catch (its heartbeat cannot be written: a full disk) stops the
    watching only for a moment: it says so, starts again, and takes a batch landed after."""
    monkeypatch.setattr(watcher, "WATCH_EVERY_S", 0.05)
    monkeypatch.setattr(watcher, "Backoff", lambda: processes.Backoff((0.1,)))
    beats = []

    def write_heartbeat(path) -> None:
        beats.append(time.monotonic())
        if len(beats) == 1:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(watcher, "write_heartbeat", write_heartbeat)
    sent = []
    monkeypatch.setattr(
        watcher, "hand_over", lambda name, digest: sent.append(name) or watcher.Run("sent")
    )
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    stop = threading.Event()
    watching = threading.Thread(
        target=watcher.watch_incoming,
        args=(incoming, stop),
        kwargs={"heartbeat": tmp_path / "watcher.json"},
    )
    watching.start()
    time.sleep(0.5)
    (incoming / "after.csv").write_text("species\nAdelie\n")
    time.sleep(0.5)
    stop.set()
    watching.join(timeout=5)

    assert sent == ["after.csv"]
    assert len(beats) > 2
    assert "OSError: [Errno 28] No space left on device; watching again in 0.1 s" in (
        capsys.readouterr().out
    )
