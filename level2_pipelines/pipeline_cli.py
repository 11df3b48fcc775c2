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
from typing import TYPE_CHECKING

from prefect.settings import PREFECT_API_URL, temporary_settings

from level2_pipelines.ops.local_servers import local_prefect_server
from level2_pipelines.settings import Settings
from level2_pipelines.timing import MLFLOW, WORK

if TYPE_CHECKING:  # imported when a run happens here: the pipeline takes ~10 s to import
    from level2_pipelines.pipeline import Outcome


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


def expected_failures() -> tuple[type[Exception], ...]:
    """What a run ends with that is the input's fault, not a crash: said in one line, no
    traceback (`make level2` prints it; the warm worker sends it to its client)."""
    from level2_pipelines.data import UnsafeBatchName
    from level2_pipelines.monitor import NotADriftVerdict
    from level2_pipelines.registry import RegistryError
    from level2_pipelines.validate import BatchRejected

    return BatchRejected, RegistryError, UnsafeBatchName, NotADriftVerdict


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


def report_lines(outcome: "Outcome", settings: Settings, seconds: float) -> list[str]:
    """What `make level2` prints about a run; the warm worker sends these lines to its client,
    so a run reads the same wherever it ran."""
    from level2_pipelines.registry import CHALLENGER

    if outcome.skipped:
        return [f"level 2: batch {outcome.batch_id} skipped: {outcome.skipped}"]
    lines = [
        f"level 2: batch {outcome.batch_id}, MLflow run {outcome.run_id}",
        f"level 2: held-out accuracy {outcome.metrics['accuracy']:.3f}, "
        f"macro F1 {outcome.metrics['macro_f1']:.3f}",
    ]
    if outcome.promoted_to is None:
        lines.append(f"level 2: {settings.model_name} v{outcome.version} registered and REJECTED:")
        lines += [f"  - {reason}" for reason in outcome.reasons]
    else:
        lines.append(
            f"level 2: {settings.model_name} v{outcome.version} is now {outcome.promoted_to}"
        )
        if outcome.promoted_to == CHALLENGER:
            lines.append("level 2: waiting for approval: `make level2-approve`")
        lines.append(f"level 2: {outcome.deployed or 'not deployed until approved'}")
    work, mlflow_io = outcome.clock.total(WORK), outcome.clock.total(MLFLOW)
    lines.append(
        f"level 2: flow {seconds:.1f} s = pipeline work {work:.1f} s + MLflow {mlflow_io:.1f} s "
        f"+ Prefect {seconds - work - mlflow_io:.1f} s"
    )
    return lines


if __name__ == "__main__":
    main()
