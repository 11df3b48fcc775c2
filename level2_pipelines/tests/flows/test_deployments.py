"""The deployments (schedule, new-data trigger, on demand) register on a Prefect API, one run at
a time each; the watcher recognises each landed content once, and events can only name files
in the incoming folder."""

import asyncio
import os
import threading
import time

import pytest
from prefect.client.orchestration import get_client

from level2_pipelines import deployments as deployments_module
from level2_pipelines.deployments import deployments, landed_files, publish
from level2_pipelines.pipeline import UnsafeBatchName, landed_path

pytestmark = pytest.mark.usefixtures("prefect_api")


def test_publish_registers_three_deployments_with_schedule_and_trigger(settings):
    """`make level2-publish` registers nightly (cron), on-new-data (trigger) and on-demand."""
    names = publish(settings)

    async def read():
        async with get_client() as client:
            return {n: await client.read_deployment_by_name(n) for n in names}

    found = asyncio.run(read())
    assert set(names) == {f"penguins-training/{n}" for n in ("nightly", "on-new-data", "on-demand")}
    assert found["penguins-training/nightly"].schedules[0].schedule.cron == settings.retrain_cron
    assert found["penguins-training/on-demand"].schedules == []


def test_landed_files_sees_each_content_once(tmp_path):
    """A CSV and a Parquet file are seen; other files and already-seen contents are not."""
    (tmp_path / "a.csv").write_text("species\n")
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    (tmp_path / "notes.txt").write_text("ignore me")
    seen = {landed_files(tmp_path, set())[0][1]}  # a.csv's content

    assert [path for path, _ in landed_files(tmp_path, seen)] == [tmp_path / "b.parquet"]


def test_landed_files_sees_new_content_under_a_name_already_seen(tmp_path):
    """A daily export with a fixed name: each new content is a new batch."""
    path = tmp_path / "daily.csv"
    path.write_text("species\nAdelie\n")
    seen = {digest for _, digest in landed_files(tmp_path, set())}
    path.write_text("species\nGentoo\n")

    assert [p for p, _ in landed_files(tmp_path, seen)] == [path]


def test_landed_files_waits_for_files_still_being_written(tmp_path):
    """A name starting with "." is being written (write, then rename): not a batch yet."""
    (tmp_path / ".daily.csv").write_text("species\n")

    assert landed_files(tmp_path, set()) == []


def test_new_data_trigger_names_a_file_not_a_path(settings):
    """The event passes only the landed file's name to the run, not a path to anywhere."""
    on_new_data = {d.name: d for d in deployments(settings)}["on-new-data"]

    assert on_new_data.triggers[0].parameters == {"incoming_name": "{{ event.payload.name }}"}


@pytest.mark.parametrize("name", ["../secrets.csv", "/etc/passwd", "sub/batch.csv", ".."])
def test_landed_path_refuses_names_outside_the_incoming_folder(settings, name):
    """A run started by an event cannot read a file outside the incoming folder."""
    with pytest.raises(UnsafeBatchName, match="incoming_name"):
        landed_path(name, settings)


def test_every_deployment_runs_one_flow_run_at_a_time(settings):
    """Each deployment has a concurrency limit of one; later runs wait in the queue."""
    limits = {d.name: d.concurrency_limit for d in deployments(settings)}

    assert all(getattr(limit, "limit", limit) == 1 for limit in limits.values()), limits


def test_watcher_sends_each_content_once_and_says_so_for_a_repeat(tmp_path, monkeypatch, capsys):
    """A file is sent once while it waits for its run; a new file with the same content is
    not sent again, and the watcher says so once instead of ignoring it silently."""
    events = []
    monkeypatch.setattr(deployments_module, "emit_event", lambda **event: events.append(event))
    monkeypatch.setattr(deployments_module, "WATCH_EVERY_S", 0.05)
    path = tmp_path / "daily.csv"
    path.write_text("species\nAdelie\n")
    stop = threading.Event()
    watcher = threading.Thread(target=deployments_module.watch_incoming, args=(tmp_path, stop))
    watcher.start()
    time.sleep(1.5)  # several polls with the first file still waiting for its run
    path.unlink()  # its run took it...
    path.write_text("species\nAdelie\n")  # ...and the same content lands again
    os.utime(path, ns=(time.time_ns() + 10**9,) * 2)  # a new landing, whatever the clock's grain
    time.sleep(1.5)
    stop.set()
    watcher.join()

    said = capsys.readouterr().out
    assert [e["payload"]["name"] for e in events] == ["daily.csv"]
    assert said.count("brings a content already sent") == 1
