"""What `GET /metrics` shows, in Prometheus's text format, with prometheus-client.

Counted on the request path (tens of microseconds): the standard HTTP series every stock
dashboard and alert expects (`http_requests_total`, `http_request_duration_seconds`, by
method, route template and status: prometheus-fastapi-instrumentator's), predictions by
species and model version. Set when the served model changes: readiness and when the served
model was trained. Read in the background every few
seconds, never at scrape time: live accuracy per model version (from the feedback in the
prediction log) and the drift monitor's latest statistics (its newest MLflow run, on the
tracking server every replica reaches; `monitor_runs.py`). Each app
has its own registry, so two apps in one process (tests, the pipeline's smoke test) never mix.

With several uvicorn workers (`LEVEL2_WORKERS`), `serve` switches prometheus-client to its
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set before the workers start): each worker writes
its values to files there and `/metrics`, whichever worker answers it, adds them all up, so it
shows the service's totals. Each gauge says how workers combine (`multiprocess_mode`); the
served version becomes a gauge counting the workers serving each version (an Info cannot be
shared); and a series once written stays until the service restarts (clearing a gauge removes
its series in one process only).
"""

import os
import time
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as standard
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from level2_pipelines.model import Lineage
from level2_pipelines.monitor_runs import LatestVerdict
from level2_pipelines.settings import Settings

# From a fraction of a millisecond (the numpy path) to seconds (a queue behind a batch).
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def multiprocess_mode() -> bool:
    """Whether prometheus-client chose its multiprocess mode (decided when it was imported)."""
    return values.ValueClass is not values.MutexValue


class ServiceMetrics:
    def __init__(self, settings: Settings | None = None) -> None:
        registry = CollectorRegistry()
        self._own = registry  # where this process's metrics are made
        self.multiprocess = multiprocess_mode()
        # What /metrics shows: this app's metrics, or every worker's added up.
        self.registry = registry
        if self.multiprocess:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry)
        self.predictions = Counter(
            "penguins_predictions",
            "Predictions by predicted species and model version",
            ["species", "model_version"],
            registry=registry,
        )
        if self.multiprocess:  # the same series an Info shows, counting workers
            self.served_workers = Gauge(
                "penguins_served_model_info",
                "Workers serving each registry version",
                ["version"],
                multiprocess_mode="livesum",
                registry=registry,
            )
        else:
            self.served = Info(
                "penguins_served_model", "The registry version being served", registry=registry
            )
        self._served_version: str | None = None
        # What /ready and the alerts on the model's age read; over workers, the worst of them.
        self.ready = Gauge(
            "penguins_ready",
            "1 while a model is loaded and served (GET /ready answers 200), else 0",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.trained = Gauge(
            "penguins_served_model_trained_timestamp_seconds",
            "When the served model was trained (seconds since the epoch; 0: none served)",
            multiprocess_mode="livemin",
            registry=registry,
        )
        # The gate's floor and the evidence the monitor wants, for alert rules to compare
        # live accuracy with: one source, the settings.
        settings = settings or Settings()
        floor = Gauge(
            "penguins_live_accuracy_floor",
            "Live accuracy under this floor (the gate's macro F1 floor) asks for a retraining",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        floor.set(settings.macro_f1_floor)
        enough = Gauge(
            "penguins_live_accuracy_min_labelled",
            "Confirmed predictions a version needs before its live accuracy is judged",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        enough.set(settings.min_batch_rows)
        # Each worker has its own buffer and its own count of rows given up: added up.
        self.log_pending = Gauge(
            "penguins_prediction_log_pending_rows",
            "Answers recorded but not yet written to the prediction log",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.log_dropped = Gauge(
            "penguins_prediction_log_dropped_rows",
            "Answers the prediction log gave up on (its database refused them too long)",
            multiprocess_mode="sum",
            registry=registry,
        )
        # The rest every worker reads from the same log and report: the latest reading counts.
        self.live_accuracy = Gauge(
            "penguins_live_accuracy",
            "Share of predictions whose confirmed species (POST /feedback) matched, per model "
            "version, over the live-accuracy window",
            ["model_version"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.labelled = Gauge(
            "penguins_feedback_labelled",
            "Predictions with a confirmed species, per model version, over the window",
            ["model_version"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.drift_p_value = Gauge(
            "penguins_drift_p_value",
            "The drift monitor's latest p-value per check (feature, or predicted species)",
            ["check"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.drift_statistic = Gauge(
            "penguins_drift_statistic",
            "The drift monitor's latest test statistic per check (KS D, or chi-squared)",
            ["check"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.drift_detected = Gauge(
            "penguins_drift_detected",
            "1 if the drift monitor's latest window drifted, else 0",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.drift_checked = Gauge(
            "penguins_drift_checked_timestamp_seconds",
            "When the drift monitor last compared a window (seconds since the epoch)",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.drift_stale = Gauge(
            "penguins_drift_verdict_stale",
            "1 while the drift monitor's verdict cannot be read from the tracking server (the "
            "one shown is the last read), else 0",
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        # Safe rollout (`rollout.py`): the challenger beside the champion, counted where it
        # answers; its live accuracy in shadow is read from the log like the champion's.
        self.shadow_answers = Counter(
            "penguins_shadow_answers",
            "The challenger's unseen answers in shadow, by whether it agreed with the champion",
            ["model_version", "agreed"],
            registry=registry,
        )
        self.challenger_errors = Counter(
            "penguins_challenger_errors",
            "Requests the challenger failed to answer (the champion answered them)",
            ["model_version"],
            registry=registry,
        )
        self.model_duration = Histogram(
            "penguins_model_duration_seconds",
            "Time in the model alone, by role (champion, challenger) on requests both answer",
            ["role", "model_version"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.shadow_live_accuracy = Gauge(
            "penguins_shadow_live_accuracy",
            "Share of the challenger's shadow answers whose confirmed species matched, per "
            "model version, over the live-accuracy window",
            ["model_version"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self.shadow_labelled = Gauge(
            "penguins_shadow_feedback_labelled",
            "The challenger's shadow answers with a confirmed species, per model version",
            ["model_version"],
            multiprocess_mode="mostrecent",
            registry=registry,
        )
        self._drift: LatestVerdict | None = None  # made on the first look, from the settings
        self._drift_shown: str | None = None  # the monitor run whose verdict is shown

    def instrument(self, app: Starlette) -> None:
        """The standard HTTP series, counted by prometheus-fastapi-instrumentator's middleware:
        the handler label is the route's template (`/predict`), never the raw path a client
        chooses (unknown paths are one `none` series); the status is the exact code. Only
        these two of its defaults: its size summaries and second histogram cost ~18 us more
        per request (measured in-process) and no rule or panel reads them."""
        instrumentator = Instrumentator(should_group_status_codes=False, registry=self._own)
        instrumentator.add(
            standard.requests(registry=self._own),
            # By route and method: a status label would multiply every bucket.
            standard.latency(
                should_include_status=False, buckets=LATENCY_BUCKETS_S, registry=self._own
            ),
        )
        instrumentator.instrument(app)

    def show_served(self, lineage: Lineage | None) -> None:
        self.ready.set(0 if lineage is None else 1)
        self.trained.set(0 if lineage is None else trained_timestamp(lineage.trained_at))
        version = lineage.version if lineage is not None else "none"
        if not self.multiprocess:
            self.served.info({"version": version})
        elif version != self._served_version:
            if self._served_version is not None:
                self.served_workers.labels(self._served_version).set(0)
            self.served_workers.labels(version).set(1)
        self._served_version = version

    def _clear(self, *gauges: Gauge) -> None:
        """Forget old series before showing the new ones; in multiprocess mode they stay (the
        files other workers read cannot forget them), so this is left out there."""
        if not self.multiprocess:
            for gauge in gauges:
                gauge.clear()

    def close(self) -> None:
        """On shutdown: this worker no longer serves, nor holds rows (its `live` gauges go)."""
        if self.multiprocess:
            mark_process_dead(os.getpid())

    def show_live_accuracy(self, rows) -> None:
        """`rows`: prediction_log.LiveAccuracy per model version."""
        self._clear(self.live_accuracy, self.labelled)
        for row in rows:
            self.labelled.labels(row.model_version).set(row.labelled)
            self.live_accuracy.labels(row.model_version).set(row.accuracy)

    def show_shadow_accuracy(self, rows) -> None:
        """`rows`: prediction_log.LiveAccuracy per challenger version, in shadow."""
        self._clear(self.shadow_live_accuracy, self.shadow_labelled)
        for row in rows:
            self.shadow_labelled.labels(row.model_version).set(row.labelled)
            self.shadow_live_accuracy.labels(row.model_version).set(row.accuracy)

    def show_drift(self, settings: Settings) -> None:
        """The drift monitor's newest verdict, read from the tracking server (where every
        monitor records it, whichever worker ran it) within `drift_verdict_timeout_s`; a
        server that cannot be read leaves the last verdict shown, marked stale. Blocks up to
        that bound: call it off the event loop."""
        if self._drift is None:
            self._drift = LatestVerdict(
                settings.resolved_tracking_uri,
                settings.experiment,
                settings.drift_verdict_timeout_s,
            )
        verdict = self._drift.refresh()
        self.drift_stale.set(0 if self._drift.problem is None else 1)
        if verdict is None or verdict.run_id == self._drift_shown:
            return
        self._drift_shown = verdict.run_id
        self._clear(self.drift_p_value, self.drift_statistic)
        for check, (p_value, statistic) in verdict.checks.items():
            self.drift_p_value.labels(check).set(p_value)
            self.drift_statistic.labels(check).set(statistic)
        self.drift_detected.set(1 if verdict.drifted else 0)
        self.drift_checked.set(verdict.checked_at)


def trained_timestamp(trained_at: str) -> float:
    """The lineage's `trained_at` (ISO 8601, as the pipeline tags it) in seconds since the
    epoch; 0 if the version carries none (a model registered by hand)."""
    try:
        return datetime.fromisoformat(trained_at).timestamp()
    except ValueError:
        return 0.0


def requests_by_worker(folder: Path, handler: str) -> dict[int, int]:
    """Requests to `handler` answered by each worker (by process id), read from the files of
    multiprocess mode in `folder`: /metrics shows only their sum; benchmarks want the spread."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        samples = (
            sample
            for metric in MultiProcessCollector.merge([str(path)])
            if metric.name == "http_requests"
            for sample in metric.samples
        )
        counts[int(path.stem.removeprefix("counter_"))] = int(
            sum(
                s.value
                for s in samples
                if s.name == "http_requests_total" and s.labels["handler"] == handler
            )
        )
    return counts


class StartedAt:
    """ASGI middleware, outermost: stamp when each request arrived, where the handler's own
    latency (recorded with its answer in the prediction log) starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["started"] = time.perf_counter()
        await self.app(scope, receive, send)
