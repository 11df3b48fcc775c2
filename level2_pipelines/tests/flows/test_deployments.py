"""The deployments (schedule, new-data trigger, on demand) register on a Prefect API, and the
watcher recognises a landed batch file once."""

import asyncio

import pytest
from prefect.client.orchestration import get_client

from level2_pipelines.deployments import landed_files, publish

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


def test_landed_files_sees_each_batch_once(tmp_path):
    """A CSV and a Parquet file are seen; other files and already-seen ones are not."""
    (tmp_path / "a.csv").write_text("species\n")
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    (tmp_path / "notes.txt").write_text("ignore me")
    seen = {tmp_path / "a.csv"}

    assert landed_files(tmp_path, seen) == [tmp_path / "b.parquet"]
