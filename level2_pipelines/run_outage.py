"""A training run and its tracking server: each stage's MLflow I/O measured into the run's
clock and, when the server is lost, one TrackingUnreachable naming the server and the stage;
and the runs such an outage (or a killed process) left RUNNING, ended FAILED by the next run.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow import MlflowClient
from prefect.runtime import flow_run

from level2_pipelines import registry
from level2_pipelines.settings import Settings
from level2_pipelines.timing import MLFLOW, measure
from level2_pipelines.tracking import unreachable, unreachable_message


class TrackingUnreachable(registry.RegistryUnavailable):
    """The tracking server was lost during a run: it names the server and the stage."""


@contextmanager
def named_outage(stage: str) -> Iterator[None]:
    """A tracking store that cannot be reached, raised in the block, becomes one
    TrackingUnreachable naming it and `stage` (the innermost stage names it)."""
    try:
        yield
    except TrackingUnreachable:
        raise
    except Exception as error:
        reason = unreachable(error)
        if reason is None:
            raise
        lost = unreachable_message(mlflow.get_tracking_uri(), reason)
        raise TrackingUnreachable(
            f"{lost.removeprefix('mlflow: ')} in the {stage} stage: nothing was decided for "
            "this batch, and it is not marked as trained on; run it again once the server "
            "answers"
        ) from error


@contextmanager
def mlflow_io(stage: str) -> Iterator[None]:
    """A stage's MLflow I/O: measured into the run's clock, and named if the store is lost."""
    with measure(MLFLOW, stage), named_outage(stage):
        yield


def end_abandoned_runs(client: MlflowClient, settings: Settings) -> None:
    """End FAILED the batch runs another run left RUNNING (it lost the tracking server, or its
    process died): under the decision lock no other batch run can be going on."""
    experiment = client.get_experiment_by_name(settings.experiment)
    running = client.search_runs(
        [experiment.experiment_id], "attributes.status = 'RUNNING'", max_results=100
    )
    for run in running:
        if "batch_source" not in run.data.tags:
            continue  # not a batch run of this pipeline
        client.set_tag(
            run.info.run_id,
            "ended_by",
            f"flow run {flow_run.id}: found unfinished (its run lost the tracking server or "
            "its process)",
        )
        client.set_terminated(run.info.run_id, "FAILED")
