"""The deployments (schedule, new-data trigger, on demand) register on a Prefect API, one run at
a time each; the watcher recognises each landed content once, and events can only name files
in the incoming folder."""

import asyncio
import hashlib
import os
import threading
import time

import pytest
from prefect.client.orchestration import get_client

from level2_pipelines import watcher as watcher_module
from level2_pipelines.data import UnsafeBatchName, landed_path
from level2_pipelines.triggers import deployments, publish
from level2_pipelines.watcher import settled_files

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_publish_registers_the_deployments_with_schedules_and_triggers(settings):
    """`make level2-publish` registers nightly (cron), on-new-data and on-drift (triggers),
    on-demand, the drift monitor on an interval, retention daily (cron), the rollout's judge
    on an interval and batch scoring (on demand, and on a cron)."""
    names = publish(settings)

    async def read():
        async with get_client() as client:
            return {n: await client.read_deployment_by_name(n) for n in names}

    found = asyncio.run(read())
    training = ("nightly", "on-new-data", "on-drift", "on-demand")
    assert set(names) == {f"penguins-training/{n}" for n in training} | {
        "penguins-monitor/every-minute",
        "penguins-retention/daily",
        "penguins-rollout/every-five-minutes",
        "penguins-scoring/on-demand",
        "penguins-scoring/scheduled",
    }
    assert found["penguins-training/nightly"].schedules[0].schedule.cron == settings.retrain_cron
    assert found["penguins-training/on-demand"].schedules == []
    monitor = found["penguins-monitor/every-minute"].schedules[0].schedule
    assert monitor.interval.total_seconds() == settings.monitor_every_s
    prune = found["penguins-retention/daily"].schedules[0].schedule
    assert prune.cron == settings.retention_cron
    judge = found["penguins-rollout/every-five-minutes"].schedules[0].schedule
    assert judge.interval.total_seconds() == settings.rollout_judge_every_s
    scoring = found["penguins-scoring/scheduled"].schedules[0].schedule
    assert scoring.cron == settings.scoring_cron
    assert found["penguins-scoring/on-demand"].schedules == []


def test_settled_files_are_batches_unchanged_since_the_last_poll(tmp_path):
    """A CSV and a Parquet file count once a poll saw them unchanged; other files never do."""
    (tmp_path / "a.csv").write_text("species\n")
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    (tmp_path / "notes.txt").write_text("ignore me")
    stamps = {}

    first = settled_files(tmp_path, stamps)
    second = settled_files(tmp_path, stamps)

    assert first == []
    assert second == [tmp_path / "a.csv", tmp_path / "b.parquet"]


def test_settled_files_waits_while_a_file_is_still_being_written(tmp_path):
    """A file that grew since the last poll, or whose name starts with ".", is not settled."""
    growing, hidden = tmp_path / "daily.csv", tmp_path / ".daily.csv"
    growing.write_text("species\n")
    hidden.write_text("species\n")
    stamps = {}
    settled_files(tmp_path, stamps)
    growing.write_text("species\nAdelie\n")

    assert settled_files(tmp_path, stamps) == []


def test_new_data_trigger_names_a_file_not_a_path(settings):
    """The event passes only the landed file's name to the run, not a path to anywhere."""
    on_new_data = {d.name: d for d in deployments(settings)}["on-new-data"]

    assert on_new_data.triggers[0].parameters == {"incoming_name": "{{ event.payload.name }}"}


@pytest.mark.parametrize("name", ["../secrets.csv", "/etc/passwd", "sub/batch.csv", ".."])
def test_landed_path_refuses_names_outside_the_incoming_folder(settings, name):
    """A run started by an event cannot read a file outside the incoming folder."""
    with pytest.raises(UnsafeBatchName, match="incoming_name"):
        landed_path(name, settings.incoming_dir)


def test_every_deployment_runs_one_flow_run_at_a_time(settings):
    """Each deployment has a concurrency limit of one; later runs wait in the queue."""
    limits = {d.name: d.concurrency_limit for d in deployments(settings)}

    assert all(getattr(limit, "limit", limit) == 1 for limit in limits.values()), limits


def test_watcher_sends_each_content_once_and_says_so_for_a_repeat(tmp_path, monkeypatch, capsys):
    """A file is sent once while it waits for its run; the same name with new content is sent;
    a new file with a content already sent is not, and the watcher says so once."""
    events = []
    monkeypatch.setattr(watcher_module, "emit_event", lambda **event: events.append(event))
    monkeypatch.setattr(watcher_module, "WATCH_EVERY_S", 0.05)
    path = tmp_path / "daily.csv"

    def land(content: str, name: str = "daily.csv") -> None:
        (tmp_path / name).write_text(content)
        later = time.time_ns() + len(events) * 10**9 + 10**9  # a new landing, whatever the clock
        os.utime(tmp_path / name, ns=(later, later))
        time.sleep(0.5)  # several polls

    stop = threading.Event()
    watcher = threading.Thread(target=watcher_module.watch_incoming, args=(tmp_path, stop))
    watcher.start()
    land("species\nAdelie\n")  # waits for its run for several polls
    path.unlink()  # its run took it
    land("species\nGentoo\n")  # a daily export under the same name, new content
    land("species\nAdelie\n", name="again.csv")  # the first content once more
    stop.set()
    watcher.join()

    said = capsys.readouterr().out
    assert [e["payload"]["sha256"] for e in events] == [
        hashlib.sha256(c.encode()).hexdigest() for c in ("species\nAdelie\n", "species\nGentoo\n")
    ]
    assert said.count("again.csv brings a content already sent") == 1
