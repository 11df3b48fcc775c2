"""The triggers: what starts a pipeline run without a person, as Prefect deployments served
(or published to a work pool): on a schedule, when new data lands, when the monitor finds
drift, and on demand. (The deploy *stage*, putting a promoted model in service, is `deploy.py`.)

    make level2-deploy          (needs the local Prefect server: `make level2-up` starts both)
    python -m level2_pipelines.triggers [--publish | --watch]

- `penguins-training/nightly`: a cron schedule (LEVEL2_RETRAIN_CRON, default 03:00 daily).
- `penguins-training/on-new-data`: a deployment trigger on the custom event
  `penguins.batch.landed`. Prefect has no file sensor, so a small watcher here polls the
  incoming folder and emits that event (with the file's name) for each new CSV or Parquet
  file; Prefect's automation then starts a flow run on that file of the incoming folder.
  With the warm worker ready (`make level2-up` starts it; `ops/warm.py`), the watcher hands the
  file to it instead, which starts the run at once and without a fresh process's imports
  (~10-15 s): a deployment run always starts a fresh process, after the runner's next poll.
  The event is sent all the same, labelled `penguins.batch.route: warm-worker` and naming the
  task run; the trigger only takes events labelled `deployment`, so a batch runs once.
- `penguins-training/on-drift`: a deployment trigger on `penguins.drift.detected`, which the
  drift monitor emits (`monitor.py`); the run trains on the served birds whose true species
  came back since the drift began, read from the monitor's MLflow run, not from the event.
- `penguins-training/on-demand`: no schedule, for runs started from the UI or the CLI.
- `penguins-monitor/every-minute`: the drift monitor, every LEVEL2_MONITOR_EVERY_S seconds.
- `penguins-retention/daily`: prunes the prediction log and the drift reports
  (LEVEL2_RETENTION_CRON, 04:30; `retention.py`).
- `penguins-rollout/every-five-minutes`: the rollout's judge, which promotes or withdraws a
  challenger on live evidence (LEVEL2_ROLLOUT_JUDGE_EVERY_S; `judge.py`).
- `penguins-scoring/on-demand` (parameter `file`) and `penguins-scoring/scheduled`: batch
  scoring with the champion; the schedule scores the new files of LEVEL2_SCORING_DIR
  (LEVEL2_SCORING_CRON, every 15 minutes; `scoring.py`).

Each deployment run executes in a fresh subprocess, as Prefect's runner does, and shows in the
Prefect UI. Each deployment runs one flow run at a time (later ones wait, queued, in the UI); across
deployments and on-demand runs the pipeline's decision lock keeps one decision at a time.
The watcher itself, and how to land a file, is `watcher.py`.
"""

import argparse
import contextvars
import sys
import threading
from datetime import timedelta
from pathlib import Path

from prefect import serve
from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import (
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
    StateType,
)
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification
from prefect.runner.storage import LocalStorage
from prefect.settings import PREFECT_API_URL, temporary_settings

from level2_pipelines.judge import rollout_judge
from level2_pipelines.monitor import DRIFT_DETECTED, drift_monitor
from level2_pipelines.ops.local_servers import local_prefect_server, watcher_heartbeat
from level2_pipelines.pipeline import training_pipeline
from level2_pipelines.retention import retention
from level2_pipelines.scoring import scoring_pipeline
from level2_pipelines.settings import Settings
from level2_pipelines.watcher import BATCH_LANDED, ROUTE, watch_incoming

CODE_ROOT = Path(__file__).resolve().parents[1]  # the folder the package is imported from


def deployments(settings: Settings) -> list[RunnerDeployment]:
    """The pipeline's deployments (scheduled, on new data, on drift, on demand), the
    monitor's, retention's, the rollout judge's and batch scoring's."""
    one_at_a_time = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
    )
    return [
        training_pipeline.to_deployment(
            name="nightly", cron=settings.retrain_cron, concurrency_limit=one_at_a_time
        ),
        training_pipeline.to_deployment(
            name="on-new-data",
            triggers=[
                DeploymentEventTrigger(
                    expect={BATCH_LANDED},
                    match={ROUTE: "deployment"},  # not the batches the warm worker took
                    # Only the name: the flow resolves it inside the incoming folder, so an
                    # event cannot point a run at any other file.
                    parameters={"incoming_name": "{{ event.payload.name }}"},
                )
            ],
            concurrency_limit=one_at_a_time,
        ),
        training_pipeline.to_deployment(
            name="on-drift",
            triggers=[
                DeploymentEventTrigger(
                    expect={DRIFT_DETECTED},
                    # Only the monitor's run id: the flow reads the verdict from MLflow.
                    parameters={"drift_run_id": "{{ event.payload.monitor_run_id }}"},
                )
            ],
            concurrency_limit=one_at_a_time,
        ),
        training_pipeline.to_deployment(name="on-demand", concurrency_limit=one_at_a_time),
        drift_monitor.to_deployment(
            name="every-minute", interval=settings.monitor_every_s, concurrency_limit=1
        ),
        retention.to_deployment(
            name="daily", cron=settings.retention_cron, concurrency_limit=one_at_a_time
        ),
        rollout_judge.to_deployment(
            name="every-five-minutes",
            interval=settings.rollout_judge_every_s,
            concurrency_limit=1,
        ),
        # Batch scoring: a file named by its `file` parameter, or the scoring folder's new files.
        scoring_pipeline.to_deployment(name="on-demand", concurrency_limit=one_at_a_time),
        scoring_pipeline.to_deployment(
            name="scheduled", cron=settings.scoring_cron, concurrency_limit=one_at_a_time
        ),
    ]


def publish(settings: Settings) -> list[str]:
    """Register the deployments on the Prefect API in use (CD on main); a worker of
    LEVEL2_WORK_POOL (or a runner serving them) executes their runs. Returns their names."""
    names = []
    for deployment in deployments(settings):
        if settings.work_pool is not None:
            # A worker runs each flow run in a scratch folder unless the deployment says where
            # the code is: where the workers have it (LEVEL2_WORKER_CODE_DIR: /app in the
            # image, whoever publishes), else the folder holding this package.
            deployment.storage = LocalStorage(settings.worker_code_dir or str(CODE_ROOT))
        deployment.apply(work_pool_name=settings.work_pool)
        names.append(deployment.full_name)
    if settings.work_pool is not None:
        crash_unresponsive_runs()
    return names


# A worker killed with its runs (a container or a machine lost) leaves them Running for ever:
# no process is left to say otherwise. Each flow run sends a heartbeat event this often
# (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set where the workers run: team mode, compose, the
# manifests; 30 s is the least Prefect takes); three missed, and the automation below marks the
# run Crashed, which the watcher sends again (`sent_runs.py`). Prefect's documented answer to
# "zombie" runs, which Prefect Cloud ships and a self-hosted server does not.
HEARTBEAT_S = 30
UNRESPONSIVE = "penguins: crash unresponsive runs"


def crash_unresponsive_runs() -> Automation:
    """Make (or make again, once) the automation that marks a silent flow run Crashed."""
    wanted = Automation(
        name=UNRESPONSIVE,
        description=f"A flow run with no heartbeat for {3 * HEARTBEAT_S} s lost its process.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            },
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * HEARTBEAT_S),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {3 * HEARTBEAT_S} s: its worker or machine was lost",
            )
        ],
    )
    with get_client(sync_client=True) as client:
        for old in client.read_automations_by_name(name=UNRESPONSIVE):
            client.delete_automation(old.id)
    return wanted.create()


def watching(settings: Settings) -> dict:
    """The watcher's rules and heartbeat, from the settings."""
    return {
        "settle_s": settings.incoming_settle_s,
        "max_bytes": settings.incoming_max_bytes,
        "quarantine": settings.quarantine_dir / "incoming",
        "heartbeat": watcher_heartbeat(settings),
        "retries": settings.incoming_retries,
        "backoff_s": settings.incoming_retry_backoff_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve (or only register) the deployments.")
    parser.add_argument(
        "--publish",
        action="store_true",
        help="register them on PREFECT_API_URL and exit (continuous delivery)",
    )
    parser.add_argument(
        "--watch",
        action="store_true",
        help="only watch the incoming folder and send its events to PREFECT_API_URL "
        "(team mode: the published deployments run on a work pool's workers)",
    )
    args = parser.parse_args()
    settings = Settings()
    if args.publish:
        for name in publish(settings):
            print(f"level 2 publish: deployment {name} registered")
        return
    settings.incoming_dir.mkdir(parents=True, exist_ok=True)
    if args.watch:
        print(f"level 2 watcher: watching {settings.incoming_dir} for new batches", flush=True)
        watch_incoming(settings.incoming_dir, threading.Event(), **watching(settings))
        return
    server = local_prefect_server(settings)
    if server is None:
        sys.exit(
            f"level 2 deploy: no Prefect server at {settings.prefect_api_url}; "
            "start it with `make level2-up` (schedules and triggers need a lasting server)"
        )
    stop = threading.Event()
    with temporary_settings({PREFECT_API_URL: server}):
        # A thread does not inherit Prefect's temporary settings (a context variable): run the
        # watcher in a copy of this context, or its events go to a throwaway local API.
        context = contextvars.copy_context()
        watcher = threading.Thread(
            target=context.run,
            args=(watch_incoming, settings.incoming_dir, stop),
            kwargs=watching(settings),
        )
        watcher.start()
        print(f"level 2 deploy: watching {settings.incoming_dir} for new batches", flush=True)
        try:
            serve(*deployments(settings))
        finally:
            stop.set()
            watcher.join()


if __name__ == "__main__":
    main()
