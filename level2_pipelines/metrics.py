"""What `GET /metrics` shows, in Prometheus's text format, with prometheus-client.

Counted on the request path (a few microseconds): requests by endpoint and status, latency
histograms, predictions by species and model version. Read in the background every few
seconds, never at scrape time: live accuracy per model version (from the feedback in the
prediction log) and the drift monitor's latest statistics (the JSON file it writes). Each app
has its own registry, so two apps in one process (tests, the pipeline's smoke test) never mix.
With several uvicorn workers each process counts its own: scrape each, or set up
prometheus-client's multiprocess mode.
"""

import json
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# From a fraction of a millisecond (the numpy path) to seconds (a queue behind a batch).
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "penguins_requests",
            "HTTP requests by endpoint (the route's path) and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "penguins_request_duration_seconds",
            "Time from request to the end of the answer, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.predictions = Counter(
            "penguins_predictions",
            "Predictions by predicted species and model version",
            ["species", "model_version"],
            registry=registry,
        )
        self.served = Info(
            "penguins_served_model", "The registry version being served", registry=registry
        )
        self.log_pending = Gauge(
            "penguins_prediction_log_pending_rows",
            "Answers recorded but not yet written to the prediction log",
            registry=registry,
        )
        self.log_dropped = Gauge(
            "penguins_prediction_log_dropped_rows",
            "Answers the prediction log gave up on (its database refused them too long)",
            registry=registry,
        )
        self.live_accuracy = Gauge(
            "penguins_live_accuracy",
            "Share of predictions whose confirmed species (POST /feedback) matched, per model "
            "version, over the live-accuracy window",
            ["model_version"],
            registry=registry,
        )
        self.labelled = Gauge(
            "penguins_feedback_labelled",
            "Predictions with a confirmed species, per model version, over the window",
            ["model_version"],
            registry=registry,
        )
        self.drift_p_value = Gauge(
            "penguins_drift_p_value",
            "The drift monitor's latest p-value per check (feature, or predicted species)",
            ["check"],
            registry=registry,
        )
        self.drift_statistic = Gauge(
            "penguins_drift_statistic",
            "The drift monitor's latest test statistic per check (KS D, or chi-squared)",
            ["check"],
            registry=registry,
        )
        self.drift_detected = Gauge(
            "penguins_drift_detected",
            "1 if the drift monitor's latest window drifted, else 0",
            registry=registry,
        )
        self.drift_checked = Gauge(
            "penguins_drift_checked_timestamp_seconds",
            "When the drift monitor last compared a window (seconds since the epoch)",
            registry=registry,
        )
        self._drift_file_stamp: float | None = None

    def show_served(self, version: str | None) -> None:
        self.served.info({"version": version or "none"})

    def show_live_accuracy(self, rows) -> None:
        """`rows`: prediction_log.LiveAccuracy per model version."""
        self.live_accuracy.clear()
        self.labelled.clear()
        for row in rows:
            self.labelled.labels(row.model_version).set(row.labelled)
            self.live_accuracy.labels(row.model_version).set(row.accuracy)

    def show_drift(self, latest: Path) -> None:
        """The monitor's latest report, when its file changed since the last look."""
        try:
            stamp = latest.stat().st_mtime
        except FileNotFoundError:
            return
        if stamp == self._drift_file_stamp:
            return
        try:
            report = json.loads(latest.read_text())
        except (OSError, ValueError):  # being replaced; the next look reads it
            return
        self._drift_file_stamp = stamp
        self.drift_p_value.clear()
        self.drift_statistic.clear()
        for check in report["checks"]:
            self.drift_p_value.labels(check["feature"]).set(check["p_value"])
            self.drift_statistic.labels(check["feature"]).set(check["statistic"])
        self.drift_detected.set(1 if report["drifted"] else 0)
        self.drift_checked.set(report["checked_at"])


class RequestMetrics:
    """ASGI middleware: count each request by its route (not its raw path, which a client
    chooses: unknown paths are one `unmatched` series) and status, and time it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        scope.setdefault("state", {})["started"] = started  # the handler's latency starts here
        status = 500  # if the app fails before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(endpoint, scope["method"], str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
