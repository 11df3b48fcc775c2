"""The drift monitor (Microsoft level 4): watch what the served model is asked, and ask for a
retraining when the world moved. A Prefect flow:

    make level2-monitor          once, now
    python -m level2_pipelines.monitor

and, while `make level2-up` runs, the deployment `penguins-monitor/every-minute`
(LEVEL2_MONITOR_EVERY_S). Each run:

1. reads the last `monitor_window` answers from the prediction log (fewer: it says how many
   it waits for, and stops);
2. compares them with the champion's reference rows (`drift.py`: KS per measurement,
   chi-squared for island, sex and the predicted species), and computes live accuracy from the
   feedback on that window;
3. records its verdict in an MLflow run of the experiment `<experiment>-monitor`, with an
   HTML report (a plot per feature) and a JSON verdict: on the tracking server, where every
   worker and the service (`/metrics`) read it (`monitor_runs.py`); a copy stays in the state
   folder for a person (`monitor/latest.json` is the newest);
4. on drift, or live accuracy under the gate's floor, emits `penguins.drift.detected`, which
   the `penguins-training/on-drift` deployment's trigger turns into a training run on the
   window's labelled rows; with fewer labelled rows than a batch needs it emits
   `penguins.drift.waiting-for-labels` instead and says what it waits for. It asks once per
   champion per `drift_cooldown_s` (a retraining takes a while to land), a cooldown kept on
   the champion's registry version, which every monitor reads, whichever worker runs it.

The reference moves with each champion: a model trained on rows whose drift the monitor
confirmed is watched against those rows (the world it was trained for), and so is every model
that follows it (`data.watched_reference`, which reads those rows from the tracking server).
"""

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
from mlflow import MlflowClient
from prefect import flow, get_run_logger
from prefect.events import emit_event
from prefect.settings import PREFECT_API_URL, temporary_settings

from level2_pipelines import drift, drift_report, judge, prediction_log, registry
from level2_pipelines.data import watched_reference
from level2_pipelines.model import load_version
from level2_pipelines.monitor_runs import DETAIL, DRIFTED, NONE_DRIFTED, SINCE, VERDICT
from level2_pipelines.monitor_runs import experiment_name as monitor_experiment
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect, experiment_id, log_to_run
from shared.contract import FEATURES

DRIFT_DETECTED = "penguins.drift.detected"
WAITING_FOR_LABELS = "penguins.drift.waiting-for-labels"


@dataclass
class MonitorOutcome:
    status: Literal["waiting-for-traffic", "clean", "drift", "waiting-for-labels", "asked"]
    detail: str
    window_rows: int = 0
    drifted: list[str] = field(default_factory=list)
    live_accuracy: float | None = None
    labelled_rows: int = 0
    mlflow_run_id: str | None = None
    report: Path | None = None
    rollout: dict[str, float | str | None] | None = None  # a challenger on trial: its evidence


@flow(name="penguins-monitor")
def drift_monitor() -> MonitorOutcome:
    """Compare the latest window of served answers with the champion's reference; ask for a
    retraining on drift or low live accuracy."""
    settings = Settings()
    logger = get_run_logger()
    engine = prediction_log.open_engine(settings.resolved_prediction_log_uri)
    try:
        window = prediction_log.served_window(engine, last=settings.monitor_window)
        if len(window) < settings.monitor_window:
            return MonitorOutcome(
                "waiting-for-traffic",
                f"{len(window)} of {settings.monitor_window} answers in the prediction log; "
                "a window needs them all",
                window_rows=len(window),
            )
        since = float(window["served_at"].min()) - 1e-6  # the window's own answers and later
        labelled = prediction_log.labelled_rows(engine, since=since)
        right = prediction_log.live_accuracy(engine, since=since)
    finally:
        engine.dispose()
    client = connect(settings)
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    reference, watched = watched_reference(client, champion.tags if champion else {}, settings)
    reference_name = watched.name
    predictions = {}  # the prediction mix, compared when there is a champion to predict
    if champion is not None:
        pipeline, _ = load_version(client, settings.model_name, champion.version)
        predictions = {
            "reference_predictions": pd.Series(pipeline.predict(reference[list(FEATURES)])),
            "window_predictions": window["predicted"],
        }
    reference, window = reference[list(FEATURES)], window[list(FEATURES)]
    report = drift.compare(reference, window, alpha=settings.drift_alpha, **predictions)
    # The champion's own answers: a model it replaced is not held against it.
    mine = next((r for r in right if champion and r.model_version == str(champion.version)), None)
    accuracy = mine.accuracy if mine is not None and mine.labelled else None
    low_accuracy = (
        accuracy is not None
        and mine.labelled >= settings.min_batch_rows
        and accuracy < settings.macro_f1_floor
    )
    outcome = MonitorOutcome(
        "clean",
        f"no drift in {len(window)} answers against {reference_name} "
        f"({len(report.checks)} checks, p < {report.threshold:.4f} each)",
        window_rows=len(window),
        drifted=report.drifted,
        live_accuracy=accuracy,
        labelled_rows=len(labelled),
    )
    outcome.rollout = on_trial(client, settings)
    if report.drifted or low_accuracy:
        reasons = [f"drift in {', '.join(report.drifted)}"] if report.drifted else []
        if low_accuracy:  # only then is there an accuracy to show
            reasons.append(f"live accuracy {accuracy:.3f} < {settings.macro_f1_floor}")
        outcome.detail = "; ".join(reasons)
        outcome.status = "drift"
    outcome.report, outcome.mlflow_run_id = record(
        report, reference, window, predictions, reference_name, outcome, since, settings, client
    )
    if outcome.status == "drift":
        ask_for_retraining(outcome, champion, since, settings, logger)
    logger.info("monitor: %s: %s", outcome.status, outcome.detail)
    return outcome


def record(
    report: drift.DriftReport,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    predictions: dict[str, pd.Series],
    reference_name: str,
    outcome: MonitorOutcome,
    since: float,
    settings: Settings,
    client: MlflowClient,
) -> tuple[Path, str]:
    """The MLflow run holding the verdict (its tags and metrics, what every process reads),
    the HTML report and the JSON verdict; a copy of both in the state folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder = settings.monitor_dir / stamp
    folder.mkdir(parents=True, exist_ok=True)
    html = drift_report.write_html(report, reference, window, folder / "drift.html", **predictions)
    experiment = experiment_id(client, settings, monitor_experiment(settings.experiment))
    run = client.create_run(experiment, run_name=f"monitor {stamp}")
    verdict = report.as_dict() | {
        "checked_at": time.time(),
        "since": since,
        "status": outcome.status,
        "detail": outcome.detail,
        "reference": reference_name,
        "live_accuracy": outcome.live_accuracy,
        "labelled_rows": outcome.labelled_rows,
        "mlflow_run_id": run.info.run_id,
    }
    (folder / "drift.json").write_text(json.dumps(verdict, indent=2) + "\n")
    metrics = {f"p_{c.feature}": c.p_value for c in report.checks}
    metrics |= {f"statistic_{c.feature}": c.statistic for c in report.checks}
    metrics |= {"window_rows": report.window_rows, "drifted_checks": len(report.drifted)}
    if outcome.live_accuracy is not None:
        metrics["live_accuracy"] = outcome.live_accuracy
    if outcome.rollout is not None:
        verdict["rollout"] = outcome.rollout
        numbers = {k: v for k, v in outcome.rollout.items() if isinstance(v, float | int)}
        metrics |= {f"rollout_{k}": v for k, v in numbers.items()}
    log_to_run(
        client,
        run.info.run_id,
        metrics=metrics,
        params={"alpha": report.alpha, "threshold": report.threshold, "reference": reference_name},
        tags={
            VERDICT: outcome.status,
            DRIFTED: ",".join(report.drifted) or NONE_DRIFTED,
            SINCE: repr(since),
            DETAIL: outcome.detail,
        },
    )
    client.log_artifacts(run.info.run_id, str(folder), "drift_report")
    client.set_terminated(run.info.run_id, "FINISHED")
    # For a person (and the benches): the newest verdict, replaced in one rename.
    latest = settings.monitor_dir / "latest.json"
    partial = latest.with_suffix(".json.partial")
    partial.write_text(json.dumps(verdict) + "\n")
    os.replace(partial, latest)
    return html, run.info.run_id


def on_trial(client: MlflowClient, settings: Settings) -> dict[str, float | str | None] | None:
    """The challenger rolled out beside the champion, if any, and the judge's evidence so far
    (`judge.py`): both models' live accuracy on confirmed birds, disagreement, failures and
    latency, shown in the monitor's report and run beside the drift checks."""
    try:
        found = judge.gather(client, settings)
    except registry.RegistryError:
        return None
    if found is None:
        return None
    switch, champion, e = found
    evidence = {
        "challenger": switch.version,
        "mode": switch.mode,
        "champion": champion,
        "confirmed": e.confirmed,
        "challenger_accuracy": e.challenger_accuracy,
        "champion_accuracy": e.champion_accuracy,
        "disagreement_rate": e.disagreed / e.attempts if e.attempts else math.nan,
        "error_rate": e.error_rate,
        "latency_ratio": e.latency_ratio,
        "verdict_so_far": judge.decide(e, settings).action,
    }
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in evidence.items()}


class NotADriftVerdict(ValueError):
    """A retraining was asked for with an MLflow run that is not the monitor's drift verdict."""


@dataclass(frozen=True)
class DriftVerdict:
    """The verdict a retraining was asked for with, read back from the monitor's MLflow run."""

    monitor_run_id: str
    since: float  # the drifted window's first answer
    drifted: tuple[str, ...]  # the checks that flagged it


def drift_verdict(client: MlflowClient, monitor_run_id: str) -> DriftVerdict:
    """Read the verdict from the monitor's own MLflow run (the tags `record` wrote): the
    evidence, not an event's word."""
    tags = client.get_run(monitor_run_id).data.tags
    if tags.get(VERDICT) != "drift":
        raise NotADriftVerdict(f"drift_run_id: MLflow run {monitor_run_id} is not a drift verdict")
    drifted = tuple(c for c in tags.get(DRIFTED, "").split(",") if c and c != NONE_DRIFTED)
    return DriftVerdict(monitor_run_id, float(tags[SINCE]), drifted)


ASKED_AT, ASKED_BY = "retraining_asked_at", "retraining_asked_by"  # on the champion's version


def ask_for_retraining(
    outcome: MonitorOutcome, champion, since: float, settings: Settings, logger
) -> None:
    """Emit the event the on-drift deployment waits for, once per champion per cooldown; or
    say what is missing. The cooldown is a tag on the champion's registry version, read and
    written under a lock of its own (`registry.decision`): two monitors, on any hosts, ask
    once between them."""
    payload = {
        "monitor_run_id": outcome.mlflow_run_id,
        "since": repr(since),
        "drifted": ",".join(outcome.drifted),
        "live_accuracy": outcome.live_accuracy,
        "labelled_rows": outcome.labelled_rows,
        "champion": f"{settings.model_name} v{champion.version if champion else 'none'}",
        "detail": outcome.detail,
    }
    resource = {"prefect.resource.id": f"penguins.model.{settings.model_name}"}
    if outcome.labelled_rows < settings.min_batch_rows:
        outcome.status = "waiting-for-labels"
        outcome.detail += (
            f"; {outcome.labelled_rows} of {settings.min_batch_rows} labelled rows in the window: "
            "waiting for the true species (POST /feedback) before retraining"
        )
        emit_event(event=WAITING_FOR_LABELS, resource=resource, payload=payload)
        logger.warning("monitor: %s", outcome.detail)
        return
    if champion is None:
        outcome.detail += "; no champion to retrain against: `make level2` trains a first one"
        return
    client = MlflowClient()
    with registry.decision(settings, "drift-ask"):
        # Read again under the lock: another monitor may have asked since this one looked.
        tags = client.get_model_version(settings.model_name, champion.version).tags
        asked_at = float(tags.get(ASKED_AT, "0"))
        if time.time() - asked_at < settings.drift_cooldown_s:
            when = datetime.fromtimestamp(asked_at, UTC).isoformat(timespec="seconds")
            outcome.detail += f"; a retraining was asked for at {when} already"
            return
        emit_event(event=DRIFT_DETECTED, resource=resource, payload=payload)
        client.set_model_version_tag(settings.model_name, champion.version, ASKED_AT, time.time())
        client.set_model_version_tag(
            settings.model_name, champion.version, ASKED_BY, outcome.mlflow_run_id
        )
    outcome.status = "asked"
    outcome.detail += (
        f"; {DRIFT_DETECTED} sent: the on-drift deployment retrains on the window's "
        f"{outcome.labelled_rows} labelled rows"
    )


def main() -> None:
    from level2_pipelines.ops.local_servers import local_prefect_server  # the machinery's

    # The workshop's Prefect server if it is up (its UI shows the run), else a temporary one.
    server = local_prefect_server(Settings())
    with temporary_settings({PREFECT_API_URL: server}) if server else nullcontext():
        outcome = drift_monitor()
    print(f"level 2 monitor: {outcome.status}: {outcome.detail}")
    if outcome.report is not None:
        print(f"level 2 monitor: report {outcome.report} (MLflow run {outcome.mlflow_run_id})")


if __name__ == "__main__":
    main()
