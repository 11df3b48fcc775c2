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

Each deployment run executes in a fresh subprocess, as Prefect's runner does, and shows in the
Prefect UI. Each deployment runs one flow run at a time (later ones wait, queued, in the UI); across
deployments and on-demand runs the pipeline's decision lock keeps one decision at a time.

Landing a file: write it under a name starting with "." (ignored), then rename it, or copy it
in whole; the watcher also waits until its size and time hold still for a poll. Files are known
by their content, so a daily export under a fixed name is seen each time its content changes.
"""

import argparse
import contextvars
import hashlib
import sys
import threading
from contextlib import suppress
from pathlib import Path

from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger, emit_event
from prefect.runner.storage import LocalStorage
from prefect.settings import PREFECT_API_URL, temporary_settings

from level2_pipelines.monitor import DRIFT_DETECTED, drift_monitor
from level2_pipelines.ops import warm_runs
from level2_pipelines.ops.local_servers import local_prefect_server
from level2_pipelines.pipeline import training_pipeline
from level2_pipelines.settings import Settings

BATCH_LANDED = "penguins.batch.landed"
ROUTE = "penguins.batch.route"  # who runs the landed batch: "warm-worker" or "deployment"
BATCH_SUFFIXES = {".csv", ".parquet"}
WATCH_EVERY_S = 1.0
CODE_ROOT = Path(__file__).resolve().parents[1]  # the folder the package is imported from


Stamp = tuple[int, int]  # a file's size and modification time


def settled_files(incoming: Path, before: dict[Path, Stamp]) -> list[Path]:
    """Batch files in `incoming` unchanged (size and modification time) since the previous
    poll, whose view `before` holds and is updated to this poll's: fully written. Names
    starting with "." are still being written."""
    now = {}
    for path in sorted(incoming.iterdir()):
        if path.suffix.lower() not in BATCH_SUFFIXES or path.name.startswith("."):
            continue
        with suppress(FileNotFoundError):  # taken by a run meanwhile
            stat = path.stat()
            now[path] = (stat.st_size, stat.st_mtime_ns)
    settled = [path for path, stamp in now.items() if before.get(path) == stamp]
    before.clear()
    before.update(now)
    return settled


def watch_incoming(incoming: Path, stop: threading.Event) -> None:
    """Emit `penguins.batch.landed` once for every batch content that lands in `incoming`; say
    once, not silently, when a new file brings a content already sent. Each landing (a file
    at a size and modification time) is read and hashed once."""
    stamps: dict[Path, Stamp] = {}
    digests: dict[tuple[Path, Stamp], str] = {}  # landing -> SHA-256 of its content
    sent: dict[str, tuple[Path, Stamp]] = {}  # content -> the landing that brought it
    while not stop.is_set():
        for path in settled_files(incoming, stamps):
            landing = (path, stamps[path])
            if landing not in digests:
                try:
                    digests[landing] = hashlib.sha256(path.read_bytes()).hexdigest()
                except FileNotFoundError:  # taken by a run meanwhile
                    continue
                digest = digests[landing]
                if digest not in sent:
                    sent[digest] = landing
                    taken_by = hand_over(path.name, digest)
                    print(f"level 2 watcher: {path.name} landed; {BATCH_LANDED} sent, {taken_by}")
                else:
                    print(
                        f"level 2 watcher: {path.name} brings a content already sent "
                        f"(sha256 {digest[:12]}); not sent again, left in place"
                    )
        sys.stdout.flush()
        stop.wait(WATCH_EVERY_S)


def hand_over(name: str, digest: str) -> str:
    """Start a run on the landed file `name`: in the warm worker if it is ready, else through
    the event the on-new-data deployment's trigger waits for. Returns who runs it."""
    resource = {"prefect.resource.id": f"penguins.batch.{digest[:12]}", ROUTE: "deployment"}
    related = []
    taken_by = "for the on-new-data deployment"
    worker, _ = warm_runs.ready_worker(Settings())
    future = None
    if worker is not None:
        try:
            future = warm_runs.warm_training.delay(incoming_name=name)
        except Exception as error:  # the watcher must go on: the deployment takes this one
            print(f"level 2 watcher: the warm worker could not take {name} ({error})")
    if future is not None:
        resource[ROUTE] = "warm-worker"
        related = [
            {
                "prefect.resource.id": f"prefect.task-run.{future.task_run_id}",
                "prefect.resource.role": "task-run",
            }
        ]
        taken_by = f"run by the warm worker (pid {worker.pid}), task run {future.task_run_id}"
    emit_event(
        event=BATCH_LANDED,
        resource=resource,
        related=related,
        payload={"name": name, "sha256": digest},
    )
    return taken_by


def deployments(settings: Settings) -> list[RunnerDeployment]:
    """The pipeline's deployments (scheduled, on new data, on drift, on demand) and the
    monitor's."""
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
    ]


def publish(settings: Settings) -> list[str]:
    """Register the deployments on the Prefect API in use (CD on main); a worker of
    LEVEL2_WORK_POOL (or a runner serving them) executes their runs. Returns their names."""
    names = []
    for deployment in deployments(settings):
        if settings.work_pool is not None:
            # A worker runs each flow run in a scratch folder unless the deployment says where
            # the code is: here, the folder holding this package (for workers on other hosts,
            # a git repository or an image holding the same code).
            deployment.storage = LocalStorage(str(CODE_ROOT))
        deployment.apply(work_pool_name=settings.work_pool)
        names.append(deployment.full_name)
    return names


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
        watch_incoming(settings.incoming_dir, threading.Event())  # until stopped by a signal
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
            target=context.run, args=(watch_incoming, settings.incoming_dir, stop)
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
