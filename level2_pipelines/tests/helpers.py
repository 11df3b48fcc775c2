"""Registry versions made without running the pipeline: for tests of loading, promotion and
serving that need versions in a registry but not a Prefect flow run."""

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient

from level2_pipelines import registry
from level2_pipelines.data import held_out_rows, reference_and_new_rows
from level2_pipelines.evaluate import evaluate
from level2_pipelines.model import Lineage
from level2_pipelines.ops.processes import MLFLOW_SERVER_ENV, mlflow_server
from level2_pipelines.settings import Settings
from level2_pipelines.train import Candidate, fit, record_training, training_rows
from shared.data import data_checksum
from shared.servers import free_port, stop_group

MLFLOW_SERVER_START_S = 120

# The lineage of a made-up registry version, for a service that serves one fixed model.
LINEAGE = Lineage(
    name="penguins-species",
    version="7",
    run_id="0123abcd",
    git_commit="f" * 40,
    data_checksum="d" * 64,
    batch_id="20261126T000000-deadbeef",
    flow_run_id="flow-run",
    trained_at="2026-11-26T00:00:00+00:00",
    metrics={"macro_f1": 1.0},
)


def all_training_rows(settings: Settings) -> pd.DataFrame:
    """All of the shared training split as the pipeline puts it together: the reference rows
    plus the 2009 birds."""
    reference, new_rows = reference_and_new_rows(settings.seed)
    return training_rows(reference, new_rows)


def log_candidate(settings: Settings, training: pd.DataFrame | None = None) -> Candidate:
    """Fit the recipe and log it as the pipeline's train stage does, in a run of its own."""
    training = all_training_rows(settings) if training is None else training
    pipeline = fit(training, settings.seed)
    held_out = held_out_rows(settings.seed)
    client = MlflowClient()
    run = client.create_run(client.get_experiment_by_name(settings.experiment).experiment_id)
    lineage = {
        "data_checksum": data_checksum(training),
        "git_commit": "test",
        "batch_id": "test-batch",
        "batch_checksum": data_checksum(training),
        "flow_run_id": "none",
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    metrics = evaluate(pipeline, held_out)
    return record_training(run.info.run_id, pipeline, training, held_out, metrics, 42, lineage)


def add_version(settings: Settings, candidate: Candidate, **tags: str) -> str:
    """A new registry version of the candidate's model (tags override its lineage)."""
    return registry.register(
        MlflowClient(),
        settings.model_name,
        candidate.model_uri,
        candidate.run_id,
        candidate.lineage | tags,
    )


def add_unsafe_version(settings: Settings, model: object, serialization_format: str) -> str:
    """A registry version holding `model` pickled, as anyone with write access could add."""
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format=serialization_format,
            pip_requirements=[],  # inferring them would load the model in a subprocess
        )
    return registry.register(
        MlflowClient(), settings.model_name, info.model_uri, run.info.run_id, {}
    )


def champion(settings: Settings) -> str | None:
    found = registry.version_by_alias(MlflowClient(), settings.model_name, registry.CHAMPION)
    return str(found.version) if found else None


def write_batch(frame: pd.DataFrame, directory: Path, name: str = "batch.csv") -> str:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    frame.to_csv(path, index=False)
    return str(path)


@contextmanager
def mlflow_server_running(backend_store_uri: str, artifacts: Path) -> Iterator[str]:
    """A real MLflow tracking server on a free port, as a team runs one (runs and registry in
    `backend_store_uri`, artifacts proxied into `artifacts`); yields its URL. The process's
    own MLflow URIs are set back afterwards, for whatever test asks MLflow next."""
    port = free_port()
    command = mlflow_server(
        port,
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts.as_uri(),
    )
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            command,
            env=os.environ | MLFLOW_SERVER_ENV,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers stop with it
        )
        try:
            deadline = time.monotonic() + MLFLOW_SERVER_START_S
            while True:
                try:
                    httpx.get(f"{url}/health", timeout=2).raise_for_status()
                    break
                except httpx.HTTPError:
                    log.seek(0)
                    assert process.poll() is None, f"mlflow server exited:\n{log.read()}"
                    assert time.monotonic() < deadline, f"mlflow server not up:\n{log.read()}"
                    time.sleep(0.5)
            yield url
        finally:
            stop_group(process)
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])
