"""Point MLflow at the configured store (called by entry points, never at import time), and
write to its runs.

Every call to a tracking server is bounded here, in one place: MLflow's client waits up to 120 s
per request and retries 7 times with backoff (~4 minutes) by default, so a server that is down
would hold a run, the service's start or a rollback for minutes. `connect` sets its own
environment variables from LEVEL2_MLFLOW_TIMEOUT_S and LEVEL2_MLFLOW_RETRIES instead.
"""

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from sqlalchemy.exc import OperationalError

from level2_pipelines.settings import Settings

log = logging.getLogger(__name__)
# Waits between tries grow 0, 2, 4... s (urllib3's exponential backoff, plus up to 1 s jitter).
BACKOFF_FACTOR_S = 1


def connect(settings: Settings) -> MlflowClient:
    """Set the tracking and registry URI, make sure the experiment exists, return a client."""
    client = point_at_store(settings)
    experiment_id(client, settings, settings.experiment)
    mlflow.set_experiment(settings.experiment)
    return client


def point_at_store(settings: Settings) -> MlflowClient:
    """A client on the configured store, with every request bounded; it does not call the
    store (a service starts whether or not the tracking server answers)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # A second fence behind model.load_version: MLflow's own loaders (mlflow.sklearn,
    # mlflow.pyfunc) refuse to deserialize any model file in this process.
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"
    # MLflow reads these on every request, so they hold for every client in this process.
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(settings.mlflow_timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.mlflow_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = str(BACKOFF_FACTOR_S)
    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_tracking_uri)
    return MlflowClient()


def unreachable(error: BaseException) -> str | None:
    """Why the tracking store could not be reached, if that is what `error` comes from (in its
    chain: MLflow re-raises a connection failure as an MlflowException, and the stages and the
    registry wrap that in their own errors); None for any other error."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, requests.exceptions.Timeout):
            return "no answer in time"
        if isinstance(seen, requests.exceptions.ConnectionError | requests.exceptions.RetryError):
            text = str(seen)
            if "Connection refused" in text:
                return "connection refused"
            if "Max retries exceeded" in text and "too many" in text:
                return "it kept answering with errors"
            return f"{type(seen).__name__}: {text[:160]}"
        if isinstance(seen, OperationalError):  # a database used as the store
            return f"its database: {str(seen.orig).strip().splitlines()[0][:160]}"
        seen = seen.__cause__ or seen.__context__
    return None


def unreachable_message(store: str, reason: str) -> str:
    """The one way a lost tracking store is named, by the service and by the pipeline."""
    return f"mlflow: the tracking server at {store} cannot be reached ({reason})"


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
        try:
            client.set_terminated(tracked.run_id, "FAILED")
        except Exception as also:
            # The store is gone (often the very failure being raised): the run stays RUNNING
            # without an end time, and the next run of the pipeline ends it as FAILED. The
            # failure being raised is the one to report, not this one.
            log.warning("MLflow run %s left unfinished: %s", tracked.run_id, also)
        raise
    client.set_terminated(tracked.run_id, tracked.status)
