"""The drift monitor's verdicts as the tracking server keeps them: each monitor run is an MLflow
run of the experiment `<experiment>-monitor`, its metrics the checks (`p_<check>`,
`statistic_<check>`) and its tags the verdict. The monitor writes them (`monitor.record`); a
training run asked for by the monitor reads its own (`monitor.drift_verdict`), and the service
the newest (`LatestVerdict`, for /metrics). Every worker and every replica of the service
reaches them, whatever state folder it has: the JSON files the monitor also writes are a report
for a person, not what any process reads.
"""

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run

log = logging.getLogger("uvicorn.error")

VERDICT, DRIFTED, SINCE, DETAIL = "verdict", "drifted", "since", "detail"  # the run's tags
NONE_DRIFTED = "-"


def experiment_name(experiment: str) -> str:
    """The monitor's own experiment: the training experiment counts training runs only."""
    return f"{experiment}-monitor"


@dataclass(frozen=True)
class ShownVerdict:
    """A monitor run's verdict as /metrics shows it."""

    run_id: str
    checked_at: float  # seconds since the epoch
    drifted: tuple[str, ...]
    checks: dict[str, tuple[float, float]]  # check -> (p-value, statistic)


def shown(run: Run) -> ShownVerdict:
    metrics, tags = run.data.metrics, run.data.tags
    checks = {
        key.removeprefix("p_"): (value, metrics.get(f"statistic_{key.removeprefix('p_')}", 0.0))
        for key, value in metrics.items()
        if key.startswith("p_")
    }
    drifted = tuple(c for c in tags.get(DRIFTED, "").split(",") if c and c != NONE_DRIFTED)
    return ShownVerdict(run.info.run_id, run.info.start_time / 1000, drifted, checks)


def newest(client: MlflowClient, experiment: str) -> ShownVerdict | None:
    """The verdict of the monitor's newest finished run; None before its first."""
    found = client.get_experiment_by_name(experiment_name(experiment))
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return shown(runs[0]) if runs else None


class LatestVerdict:
    """The newest verdict, read from the tracking server in a thread of its own and waited for
    at most `timeout_s`, so a server that is slow or down never holds up the caller: the last
    verdict read stays `known`, and `problem` says why it may be stale. At most one read is
    in flight; one that outlives its wait is taken up by the next call."""

    def __init__(self, tracking_uri: str, experiment: str, timeout_s: float) -> None:
        self.tracking_uri, self.experiment, self.timeout_s = tracking_uri, experiment, timeout_s
        self.known: ShownVerdict | None = None
        self.problem: str | None = None
        self._reading: threading.Thread | None = None
        self._outcome: tuple[ShownVerdict | None, str | None] | None = None

    def refresh(self) -> ShownVerdict | None:
        """Read the newest verdict now (within the bound); returns the one known."""
        if self._reading is None or not self._reading.is_alive():
            self._outcome = None
            self._reading = threading.Thread(target=self._read, name="drift-verdict", daemon=True)
            self._reading.start()
        self._reading.join(self.timeout_s)
        if self._outcome is None:
            self._report(
                f"the tracking server {self.tracking_uri} did not answer within "
                f"{self.timeout_s:g} s (LEVEL2_DRIFT_VERDICT_TIMEOUT_S)"
            )
            return self.known
        verdict, error = self._outcome
        if error is not None:
            self._report(error)
        else:
            if self.problem is not None:
                log.info("drift verdict: read again from %s", self.tracking_uri)
            self.known, self.problem = verdict or self.known, None
        return self.known

    def _read(self) -> None:
        if _embedded_store_missing(self.tracking_uri):
            self._outcome = (None, None)  # nothing recorded yet; not created by looking
            return
        try:
            verdict = newest(MlflowClient(tracking_uri=self.tracking_uri), self.experiment)
        except Exception as error:  # a down server, a refused request: shown as stale
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            self._outcome = (None, f"cannot read it from {self.tracking_uri}: {first}")
        else:
            self._outcome = (verdict, None)

    def _report(self, problem: str) -> None:
        if problem != self.problem:
            log.warning("drift verdict: %s; /metrics shows the last one read", problem)
        self.problem = problem


def _embedded_store_missing(uri: str) -> bool:
    """An embedded SQLite store not made yet: no monitor has run against it."""
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()
