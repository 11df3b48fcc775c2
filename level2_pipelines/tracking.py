"""Point MLflow at the configured store (called by entry points, never at import time), and
write to its runs."""

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from level2_pipelines.settings import Settings


def connect(settings: Settings) -> MlflowClient:
    """Set the tracking and registry URI, make sure the experiment exists, return a client."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # A second fence behind model.load_version: MLflow's own loaders (mlflow.sklearn,
    # mlflow.pyfunc) refuse to deserialize any model file in this process.
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_tracking_uri)
    client = MlflowClient()
    experiment_id(client, settings, settings.experiment)
    mlflow.set_experiment(settings.experiment)
    return client


def experiment_id(client: MlflowClient, settings: Settings, name: str) -> str:
    """The id of experiment `name`, made if missing: on the embedded store with its artifacts
    in the state folder; a tracking server decides its own."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    local = settings.tracking_uri is None
    return client.create_experiment(
        name, artifact_location=settings.mlflow_artifacts_dir.resolve().as_uri() if local else None
    )


def log_to_run(
    client: MlflowClient,
    run_id: str,
    *,
    metrics: dict[str, float] | None = None,
    params: dict[str, object] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Metrics (at step 0), parameters and tags in one store write: each `log_metric`,
    `log_params` or `set_tag` call is a transaction of its own (~10-40 ms each on SQLite)."""
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, value, now, 0) for key, value in (metrics or {}).items()],
        # As mlflow.log_params records them: the value's str().
        params=[Param(key, str(value)) for key, value in (params or {}).items()],
        tags=[RunTag(key, str(value)) for key, value in (tags or {}).items()],
    )


@dataclass
class TrackedRun:
    run_id: str
    status: str = "FINISHED"  # how the run ends when its block does not raise


@contextmanager
def tracked_run(
    client: MlflowClient, experiment: str, name: str, tags: dict[str, str]
) -> Iterator[TrackedRun]:
    """A new run of `experiment`, ended when the block ends: FAILED if it raises, else with
    the status the block left (FINISHED, or FAILED for an expected failure it returned)."""
    run = client.create_run(
        client.get_experiment_by_name(experiment).experiment_id, run_name=name, tags=tags
    )
    tracked = TrackedRun(run.info.run_id)
    try:
        yield tracked
    except BaseException:
        client.set_terminated(tracked.run_id, "FAILED")
        raise
    client.set_terminated(tracked.run_id, tracked.status)
