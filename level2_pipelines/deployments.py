"""Serve the pipeline as Prefect deployments: on a schedule, and when new data lands.

    make level2-deploy          (needs the local Prefect server: `make level2-up` starts both)
    python -m level2_pipelines.deployments [--publish]

- `penguins-training/nightly`: a cron schedule (LEVEL2_RETRAIN_CRON, default 03:00 daily).
- `penguins-training/on-new-data`: a deployment trigger on the custom event
  `penguins.batch.landed`. Prefect has no file sensor, so a small watcher here polls the
  incoming folder and emits that event (with the file's path) for each new CSV or Parquet
  file; Prefect's automation then starts a flow run with the path as `batch_path`.
- `penguins-training/on-demand`: no schedule, for runs started from the UI or the CLI.

Each run executes in a fresh subprocess, as Prefect's runner does, and shows in the Prefect UI.
"""

import argparse
import contextvars
import sys
import threading
import time
from pathlib import Path

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger, emit_event
from prefect.settings import PREFECT_API_URL, temporary_settings

from level2_pipelines.pipeline import training_pipeline
from level2_pipelines.run import local_prefect_server
from level2_pipelines.settings import Settings

BATCH_LANDED = "penguins.batch.landed"
BATCH_SUFFIXES = {".csv", ".parquet"}
WATCH_EVERY_S = 1.0


def landed_files(incoming: Path, seen: set[Path]) -> list[Path]:
    """New batch files in `incoming` whose size held still for one poll (fully written)."""
    ready = []
    for path in sorted(incoming.iterdir()):
        if path.suffix.lower() not in BATCH_SUFFIXES or path in seen or not path.is_file():
            continue
        size = path.stat().st_size
        time.sleep(0.2)
        if path.exists() and path.stat().st_size == size:
            ready.append(path)
    return ready


def watch_incoming(incoming: Path, stop: threading.Event) -> None:
    """Emit `penguins.batch.landed` once for every batch file that lands in `incoming`."""
    seen: set[Path] = set()
    while not stop.is_set():
        for path in landed_files(incoming, seen):
            seen.add(path)
            emit_event(
                event=BATCH_LANDED,
                resource={"prefect.resource.id": f"penguins.batch.{path.name}"},
                payload={"path": str(path)},
            )
            print(f"level 2 watcher: {path.name} landed; event {BATCH_LANDED} sent", flush=True)
        stop.wait(WATCH_EVERY_S)


def deployments(settings: Settings) -> list[RunnerDeployment]:
    """The pipeline's three deployments: scheduled, on new data, and on demand."""
    return [
        training_pipeline.to_deployment(name="nightly", cron=settings.retrain_cron),
        training_pipeline.to_deployment(
            name="on-new-data",
            triggers=[
                DeploymentEventTrigger(
                    expect={BATCH_LANDED},
                    parameters={"batch_path": "{{ event.payload.path }}"},
                )
            ],
        ),
        training_pipeline.to_deployment(name="on-demand"),
    ]


def publish(settings: Settings) -> list[str]:
    """Register the deployments on the Prefect API in use (CD on main); a worker of
    LEVEL2_WORK_POOL (or a runner serving them) executes their runs. Returns their names."""
    names = []
    for deployment in deployments(settings):
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
    args = parser.parse_args()
    settings = Settings()
    if args.publish:
        for name in publish(settings):
            print(f"level 2 publish: deployment {name} registered")
        return
    server = local_prefect_server(settings)
    if server is None:
        sys.exit(
            f"level 2 deploy: no Prefect server at {settings.prefect_api_url}; "
            "start it with `make level2-up` (schedules and triggers need a lasting server)"
        )
    settings.incoming_dir.mkdir(parents=True, exist_ok=True)
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
