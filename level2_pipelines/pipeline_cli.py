"""The pipeline's command line: run it once, on demand, and report the run. `make level2
[BATCH=path]`, or

    python -m level2_pipelines.pipeline_cli [--batch PATH | --simulate ROWS | --drift-run-id ID]
                                            [--approval auto|manual] [--force]

With the workshop's servers up (`make level2-up`) the run goes to its warm worker, a process
that has the pipeline's libraries imported already (`ops/warm.py`), and is recorded on its Prefect
server; this process only submits it and prints the same report. With the Prefect server up but
no warm worker ready, the run happens here and is recorded there. Otherwise Prefect starts a
temporary API for this run; it takes ~10 s to boot, so it is started first, in the background,
and boots while this process imports the pipeline's libraries (~10 s more).
"""

import argparse
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

from prefect.settings import PREFECT_API_URL, temporary_settings

from level2_pipelines.ops.local_servers import local_prefect_server
from level2_pipelines.outcome import expected_failures, report_lines
from level2_pipelines.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the level 2 training pipeline once.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--batch", help="a CSV or Parquet batch; default: the 2009 birds")
    source.add_argument("--simulate", type=int, metavar="ROWS", help="a simulated batch")
    source.add_argument(
        "--drift-run-id",
        metavar="ID",
        help="the served birds whose species came back since the drift monitor's MLflow run ID "
        "found drift (what the on-drift deployment runs)",
    )
    parser.add_argument("--approval", choices=["auto", "manual"], help="default: settings")
    parser.add_argument(
        "--force", action="store_true", help="train even if this content was trained on before"
    )
    args = parser.parse_args()
    settings = Settings()
    server = local_prefect_server(settings)
    print(f"level 2: Prefect API {server or 'temporary (started for this run)'}", flush=True)
    if server is not None and run_warm(args, settings, server):
        return
    booting = None
    if server is None:
        # The same singleton Prefect would start on first use: booting it now overlaps its
        # start-up with the imports below (it is a subprocess, on the other core).
        from prefect.server.api.server import SubprocessASGIServer

        booting = threading.Thread(target=SubprocessASGIServer().start)
        booting.start()
    # Deferred on purpose (see above): GX, MLflow and scikit-learn take ~10 s to import.
    from level2_pipelines.pipeline import training_pipeline

    if booting is not None:
        booting.join()
    start = time.perf_counter()
    with temporary_settings({PREFECT_API_URL: server}) if server else nullcontext():
        try:
            outcome = training_pipeline(
                args.batch,
                args.approval,
                args.simulate,
                force=args.force,
                drift_run_id=args.drift_run_id,
            )
        except expected_failures() as error:
            sys.exit(f"level 2: {error}")
    print("\n".join(report_lines(outcome, settings, time.perf_counter() - start)))


def run_warm(args: argparse.Namespace, settings: Settings, server: str) -> bool:
    """Run in the warm worker if it is ready; False if it is not (saying why in one line when
    there is one that cannot take the run)."""
    from level2_pipelines.ops.warm_runs import WarmRunLost, ready_worker, run_in_worker

    worker, why_not = ready_worker(settings)
    if worker is None:
        if why_not:
            print(f"level 2: {why_not}; running in this process", flush=True)
        return False
    print(f"level 2: running in the warm worker (pid {worker.pid}, `make level2-up`)", flush=True)
    batch = str(Path(args.batch).resolve()) if args.batch else None  # it has its own cwd
    with temporary_settings({PREFECT_API_URL: server}):
        try:
            result = run_in_worker(
                settings,
                batch_path=batch,
                approval=args.approval,
                simulate_rows=args.simulate,
                force=args.force,
                drift_run_id=args.drift_run_id,
            )
        except WarmRunLost as error:
            sys.exit(f"level 2: in the warm worker, {error}")
    if result.error:
        sys.exit(result.error)
    print("\n".join(result.lines))
    return True


if __name__ == "__main__":
    main()
