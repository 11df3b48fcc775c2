"""The watcher follows each batch to its run's end: a run that failed or crashed, not by the
input's fault, is started again on the same content (put back if the run had moved it), a
bounded number of times, then the batch is quarantined with the reason; a refusal is not
retried. The runs' states are Prefect's own State objects, as the API returns them."""

import threading
import time

import pytest
from prefect.states import Completed, Crashed, Failed

from level2_pipelines import watcher


@pytest.fixture
def watching(tmp_path, monkeypatch):
    """A watcher on tmp_path/incoming whose runs end as the test's list of states says; yields
    (incoming, the names each run was started on, the states still to come)."""
    monkeypatch.setattr(watcher, "WATCH_EVERY_S", 0.05)
    monkeypatch.setattr(watcher, "CHECK_EVERY_S", 0.05)
    incoming = tmp_path / "state" / "incoming"
    incoming.mkdir(parents=True)
    started, ends = [], []

    def hand_over(name: str, digest: str) -> watcher.Run:
        started.append(name)
        return watcher.Run("run by the test", task_run_id=f"t-{len(started)}", name=name)

    def run_state(run: watcher.Run, claimed: set) -> object:
        index = int(run.task_run_id.split("-")[1]) - 1
        return ends[index](incoming) if index < len(ends) else None

    monkeypatch.setattr(watcher, "hand_over", hand_over)
    monkeypatch.setattr(watcher, "run_state", run_state)
    stop = threading.Event()
    thread = threading.Thread(
        target=watcher.watch_incoming,
        args=(incoming, stop),
        kwargs={"retries": 3, "backoff_s": 0.1},
    )
    thread.start()
    yield incoming, started, ends
    stop.set()
    thread.join(timeout=10)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def crashed_after_validation(incoming):
    """The run moved the batch to the batches folder (validation kept it), then its process
    was killed."""
    kept = incoming.parent / "batches" / "b1"
    kept.mkdir(parents=True, exist_ok=True)
    if (incoming / "daily.csv").exists():
        (incoming / "daily.csv").replace(kept / "daily.csv")
    return Crashed(message="Flow run infrastructure exited with non-zero status code -9.")


def test_a_batch_whose_run_crashed_is_put_back_and_sent_again(watching, capsys):
    """Crashed after validation had moved the file: it is back in incoming/ and a second run
    is started on it; once that one completes the watcher lets the batch go."""
    incoming, started, ends = watching
    ends += [crashed_after_validation, lambda incoming: Completed()]

    (incoming / "daily.csv").write_text("species\nAdelie\n")
    wait_until(lambda: len(started) == 2 and not list((incoming / ".sent").iterdir()))

    assert started == ["daily.csv", "daily.csv"]
    assert (incoming / "daily.csv").read_text() == "species\nAdelie\n"
    said = capsys.readouterr().out
    assert "non-zero status code -9.; not the input's fault: starting it again" in said
    assert "daily.csv: task run t-2 Completed; done" in said


def test_a_batch_whose_runs_keep_failing_is_quarantined_with_the_reason(watching, tmp_path):
    """After `retries` runs that failed, the batch leaves incoming/ for the quarantine's
    incoming/ with the last reason, and is not started again."""
    incoming, started, ends = watching
    ends += [lambda incoming: Failed(message="Flow run encountered an exception: OSError: x")] * 3

    (incoming / "daily.csv").write_text("species\nGentoo\n")
    quarantined = incoming.parent / "quarantine" / "incoming"
    wait_until(lambda: (quarantined / "daily.csv.reason.txt").exists())
    time.sleep(0.5)

    assert started == ["daily.csv"] * 3
    assert not (incoming / "daily.csv").exists()
    assert (quarantined / "daily.csv").read_text() == "species\nGentoo\n"
    reason = (quarantined / "daily.csv.reason.txt").read_text()
    assert "3 runs failed, the last: task run t-3 Failed" in reason and "OSError: x" in reason


def test_a_batch_the_pipeline_refused_is_not_sent_again(watching, capsys):
    """A failure that is the input's fault (an expected failure the pipeline names) ends it."""
    incoming, started, ends = watching
    ends += [
        lambda incoming: Failed(message="Flow run encountered an exception: RegistryError: no")
    ]

    (incoming / "daily.csv").write_text("species\nChinstrap\n")
    wait_until(lambda: "refused, the input's fault" in capsys.readouterr().out)
    time.sleep(0.5)

    assert started == ["daily.csv"]
    assert not list((incoming / ".sent").iterdir())


def test_a_restarted_watcher_follows_the_run_it_was_waiting_for(tmp_path, monkeypatch, capsys):
    """A watcher stopped while a batch's run goes on leaves a note; the next one follows that
    run to its end instead of starting another on the batch."""
    monkeypatch.setattr(watcher, "WATCH_EVERY_S", 0.05)
    monkeypatch.setattr(watcher, "CHECK_EVERY_S", 0.05)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    started, ended = [], threading.Event()

    def hand_over(name: str, digest: str) -> watcher.Run:
        started.append(name)
        return watcher.Run("run by the test", task_run_id="t-1", name=name)

    monkeypatch.setattr(watcher, "hand_over", hand_over)
    monkeypatch.setattr(
        watcher, "run_state", lambda run, claimed: Completed() if ended.is_set() else None
    )

    def watch_for(seconds: float) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=watcher.watch_incoming, args=(incoming, stop))
        thread.start()
        time.sleep(seconds)
        stop.set()
        thread.join(timeout=10)

    (incoming / "daily.csv").write_text("species\nAdelie\n")
    watch_for(0.5)  # sends it; its run goes on
    ended.set()
    watch_for(0.5)  # a new watcher: the run ends

    assert started == ["daily.csv"]
    assert list((incoming / ".sent").iterdir()) == []
    said = capsys.readouterr().out
    assert "daily.csv was sent by an earlier watcher; following task run t-1 on" in said
    assert "daily.csv: task run t-1 Completed; done" in said
