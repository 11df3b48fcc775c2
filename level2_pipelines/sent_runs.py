"""A batch the watcher sent, until its run ends: which run it is (the warm worker's task run,
or the flow run the event started on the on-new-data deployment, found among its runs by the
file's name), the note kept beside its link so a restarted watcher follows it on, and what the
run's end means for the batch (`judge`). The watcher (`watcher.py`) starts runs and retries.
"""

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterExpectedStartTime,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import State

from level2_pipelines.incoming import same_file

ON_NEW_DATA = "penguins-training/on-new-data"  # the deployment the event starts (triggers.py)


@dataclass
class Run:
    """A run started on a landed batch: the warm worker's task run, or the flow run the event
    starts on the on-new-data deployment (found later among its runs, by the file's name)."""

    taken_by: str
    task_run_id: str | None = None
    name: str = ""
    asked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    flow_run_id: str | None = None

    def __str__(self) -> str:
        if self.task_run_id is not None:
            return f"task run {self.task_run_id}"
        return f"flow run {self.flow_run_id}" if self.flow_run_id else f"the run of {ON_NEW_DATA}"


@dataclass
class Pending:
    """A batch sent, until its run's outcome is known."""

    name: str  # its name in incoming/
    digest: str
    kept: Path  # a hard link in incoming/.sent/: the content, wherever a run moved the file
    run: Run
    tries: int = 1  # runs started on it
    checked: float = field(default_factory=time.monotonic)
    retry_at: float | None = None

    @property
    def note(self) -> Path:
        """Beside the link: which run it waits for, so a restarted watcher follows it on."""
        return self.kept.with_name(f"{self.kept.name}.json")

    def save(self) -> None:
        run = self.run
        found = {"name": self.name, "digest": self.digest, "tries": self.tries}
        found |= {"task_run_id": run.task_run_id, "flow_run_id": run.flow_run_id}
        found |= {"asked_at": run.asked_at.isoformat(), "taken_by": run.taken_by}
        partial = self.note.with_suffix(".partial")
        partial.write_text(json.dumps(found))
        partial.replace(self.note)

    @classmethod
    def load(cls, kept: Path) -> "Pending | None":
        try:
            found = json.loads(kept.with_name(f"{kept.name}.json").read_text())
            run = Run(
                found["taken_by"],
                task_run_id=found["task_run_id"],
                name=found["name"],
                asked_at=datetime.fromisoformat(found["asked_at"]),
                flow_run_id=found["flow_run_id"],
            )
            return cls(found["name"], found["digest"], kept, run, tries=found["tries"])
        except (FileNotFoundError, ValueError, KeyError):
            return None


def judge(state: State, pending: Pending, quarantine_dir: Path) -> str | None:
    """What a run's end means for its batch: None for a failure that is not the input's (a
    crash never is: a process killed, a machine gone)."""
    if state.is_completed():
        return "done"
    if state.is_cancelled():
        return "cancelled by someone: not started again"
    if not state.is_failed():
        return None
    from level2_pipelines.outcome import expected_failures  # the pipeline's errors: imported late

    message = state.message or ""
    if quarantined(pending, quarantine_dir) or any(
        f"{error.__name__}:" in message for error in expected_failures()
    ):
        return "refused, the input's fault: not started again"
    return None


def quarantined(pending: Pending, quarantine_dir: Path) -> bool:
    """Whether the pipeline moved this batch to its quarantine (validation refused it)."""
    return any(same_file(p, pending.kept) for p in quarantine_dir.glob(f"*/{pending.name}"))


def run_state(run: Run, claimed: set[str]) -> State | None:
    """The state of the run started on a batch; None while its flow run has not appeared."""
    with get_client(sync_client=True) as client:
        if run.task_run_id is not None:
            return client.read_task_run(UUID(run.task_run_id)).state
        if run.flow_run_id is None:
            deployment = client.read_deployment_by_name(ON_NEW_DATA)
            recent = FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id]),
                expected_start_time=FlowRunFilterExpectedStartTime(
                    after_=run.asked_at - timedelta(seconds=5)
                ),
            )
            for flow_run in client.read_flow_runs(
                flow_run_filter=recent, sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=200
            ):
                mine = flow_run.parameters.get("incoming_name") == run.name
                if mine and str(flow_run.id) not in claimed:
                    run.flow_run_id = str(flow_run.id)
                    claimed.add(run.flow_run_id)
                    break
            else:
                return None
        return client.read_flow_run(UUID(run.flow_run_id)).state
