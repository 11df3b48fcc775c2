"""How a pipeline run ends, told to a person: the report `make level2` prints, and the failures
that are the input's fault (one line, no traceback). The command line and the warm worker both
use them, so a run reads the same wherever it ran."""

from dataclasses import dataclass, field

from level2_pipelines.settings import Settings
from level2_pipelines.timing import MLFLOW, WORK, Clock


@dataclass
class Outcome:
    """What one run did: its MLflow run, the version it made, where that went and why."""

    batch_id: str
    run_id: str | None = None  # None when the batch was skipped
    skipped: str = ""  # why no run was made (the same content was trained on before)
    version: str | None = None
    promoted_to: str | None = None  # "champion", "challenger", or None when rejected
    rollout: str = ""  # "shadow" or "canary": a challenger on trial beside the champion
    reasons: list[str] = field(default_factory=list)
    deployed: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    clock: Clock = field(default_factory=Clock)


def expected_failures() -> tuple[type[Exception], ...]:
    """What a run ends with that is the input's fault, not a crash: said in one line, no
    traceback (`make level2` prints it; the warm worker sends it to its client)."""
    from level2_pipelines.data import UnsafeBatchName
    from level2_pipelines.monitor import NotADriftVerdict
    from level2_pipelines.registry import RegistryError
    from level2_pipelines.validate import BatchRejected

    return BatchRejected, RegistryError, UnsafeBatchName, NotADriftVerdict


def report_lines(outcome: Outcome, settings: Settings, seconds: float) -> list[str]:
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
        if outcome.rollout:
            lines.append(
                f"level 2: rolled out beside the champion ({outcome.rollout}); "
                "`make level2-judge` promotes or withdraws it on live evidence"
            )
        elif outcome.promoted_to == CHALLENGER:
            lines.append("level 2: waiting for approval: `make level2-approve`")
            lines.append(f"level 2: {outcome.deployed or 'not deployed until approved'}")
        else:
            lines.append(f"level 2: {outcome.deployed or 'not deployed'}")
    work, mlflow_io = outcome.clock.total(WORK), outcome.clock.total(MLFLOW)
    lines.append(
        f"level 2: flow {seconds:.1f} s = pipeline work {work:.1f} s + MLflow {mlflow_io:.1f} s "
        f"+ Prefect {seconds - work - mlflow_io:.1f} s"
    )
    return lines
