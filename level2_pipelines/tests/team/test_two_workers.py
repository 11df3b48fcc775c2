"""Two workers, each with a state folder of its own (as two containers have), run the pipeline
at the same time against one MLflow server on PostgreSQL, with two different batches, each
sent to both: the decision is one at a time across them (PostgreSQL's advisory lock, in the
prediction log's database by default), so the registry ends with one champion, a rollback
chain without a fork, and each batch trained once."""

import os
import subprocess
import sys
import threading

import pytest
from mlflow import MlflowClient

from level2_pipelines.data import read_batch_file
from level2_pipelines.tests.helpers import mlflow_server_running, write_batch
from shared.data import data_checksum
from shared.servers import free_port
from shared.simulate import simulate_batch

pytestmark = [pytest.mark.team, pytest.mark.timeout(900)]

MODEL = "penguins-two-workers"


def run_batches(env: dict[str, str], batches: list[str], outputs: list[tuple[int, str]]) -> None:
    """One worker: the pipeline on each batch in turn, as its queue hands them out."""
    for batch in batches:
        done = subprocess.run(
            [sys.executable, "-m", "level2_pipelines.pipeline_cli", "--batch", batch],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        outputs.append((done.returncode, done.stdout + done.stderr))


def test_two_workers_at_once_leave_one_champion_chain_and_train_each_batch_once(
    tmp_path, new_database
):
    log_uri = new_database("log")
    with mlflow_server_running(new_database("mlflow"), tmp_path / "artifacts") as url:
        one, two = (
            write_batch(simulate_batch(240, seed=seed), tmp_path / "batches", f"b{seed}.csv")
            for seed in (31, 32)
        )

        def env_of(name: str) -> dict[str, str]:
            (tmp_path / name / "prefect").mkdir(parents=True, exist_ok=True)  # Prefect's home
            return os.environ | {
                "LEVEL2_STATE_DIR": str(tmp_path / name),
                "LEVEL2_TRACKING_URI": url,
                "LEVEL2_PREDICTION_LOG_URI": log_uri,  # and so the decision lock's database
                "LEVEL2_MODEL_NAME": MODEL,
                "LEVEL2_PORT": "1",  # no service: deploy reports "not running"
                "LEVEL2_PREFECT_PORT": str(free_port()),  # no workshop server: a temporary one
                "LEVEL2_ADMIN_TOKEN": "a-test-token-nobody-guesses",
                "PREFECT_HOME": str(tmp_path / name / "prefect"),
            }

        outputs: list[tuple[int, str]] = []
        workers = [
            threading.Thread(target=run_batches, args=(env_of("a"), [one, two], outputs)),
            threading.Thread(target=run_batches, args=(env_of("b"), [two, one], outputs)),
        ]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        rolled = subprocess.run(
            [sys.executable, "-m", "level2_pipelines.registry", "rollback"],
            env=env_of("c"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert [code for code, _ in outputs] == [0, 0, 0, 0], "\n\n".join(t for _, t in outputs)
        client = MlflowClient(tracking_uri=url)
        versions = {v.version: v for v in client.search_model_versions(f"name = '{MODEL}'")}
        champion = client.get_model_version_by_alias(MODEL, "champion").version
        experiment = client.get_experiment_by_name("penguins-level2").experiment_id
        runs = client.search_runs([experiment], order_by=["attributes.start_time ASC"])

    print("\n\n".join(text for _, text in outputs))
    assert sum("already trained on" in text for _, text in outputs) == 2
    # Each batch's content on exactly one version.
    trained = sorted(v.tags["batch_checksum"] for v in versions.values())
    assert trained == sorted(data_checksum(read_batch_file(p)) for p in (one, two))
    # One chain: the champion before the rollback replaced the other version, which replaced
    # none; the rollback walked it back.
    promoted = {n: v for n, v in versions.items() if "champion_since" in v.tags}
    assert len(promoted) == 2, {n: v.tags for n, v in versions.items()}
    first, second = sorted(promoted, key=lambda n: promoted[n].tags["champion_since"])
    assert "previous_champion" not in promoted[first].tags
    assert promoted[second].tags["previous_champion"] == first
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert champion == first and "rolled_back_at" in promoted[second].tags
    # The two training runs did not overlap: one decided, then the other.
    assert len(runs) == 2
    assert runs[0].info.end_time <= runs[1].info.start_time
