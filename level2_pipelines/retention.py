"""Retention: level 2's growing records pruned, so a service that runs for months stays bounded.

    make level2-prune
    python -m level2_pipelines.retention

and, while `make level2-up` runs (or on a team's workers), the deployment
`penguins-retention/daily` (LEVEL2_RETENTION_CRON, 04:30). What it removes:

- prediction-log answers older than LEVEL2_RETAIN_PREDICTIONS_DAYS (30), and the oldest beyond
  LEVEL2_RETAIN_PREDICTIONS_ROWS (1,000,000), with the feedback given on them; never the newest
  LEVEL2_MONITOR_WINDOW answers, which the drift monitor compares and an on-drift retraining
  learns from. Feedback whose answer is not written yet (the service writes in the background)
  is kept; feedback on no answer at all goes once it is older than the answers kept;
- the monitor's report folders older than LEVEL2_RETAIN_REPORTS_DAYS (7) or beyond the newest
  LEVEL2_RETAIN_REPORTS (500); the newest report, `latest.json` and `asked.json` always stay.
  Each report is also in its MLflow run, which is the record; these are the quick-look copies.
"""

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from prefect import flow, get_run_logger

from level2_pipelines import prediction_log
from level2_pipelines.prediction_log import feedback, predictions, shadow_answers
from level2_pipelines.settings import Settings

DAY_S = 24 * 3600


@dataclass
class Pruned:
    predictions: int
    feedback: int
    reports: int

    def __str__(self) -> str:
        return (
            f"{self.predictions} answers, {self.feedback} feedback rows "
            f"and {self.reports} drift reports removed"
        )


def prune_prediction_log(engine: sa.Engine, settings: Settings, now: float) -> tuple[int, int]:
    """Remove answers past their age or the row limit, and their feedback, in one transaction;
    the monitor's window stays whatever its age. Returns (answers, feedback rows) removed."""
    cutoff = now - settings.retain_predictions_days * DAY_S
    with engine.begin() as connection:
        by_rows = nth_newest(connection, settings.retain_predictions_rows)
        if by_rows is not None:  # more answers than the limit: the older ones go too
            cutoff = max(cutoff, by_rows)
        # The monitor's window stays: with fewer answers than a window, every one of them.
        window = nth_newest(connection, settings.monitor_window)
        answered = removed = 0
        if window is not None:
            cutoff = min(cutoff, window)
            old = sa.select(predictions.c.prediction_id).where(predictions.c.served_at < cutoff)
            answered = connection.execute(
                feedback.delete().where(feedback.c.prediction_id.in_(old))
            ).rowcount
            removed = connection.execute(
                predictions.delete().where(predictions.c.served_at < cutoff)
            ).rowcount
            # A challenger's unseen answers to those requests (`rollout.py`) go with them.
            connection.execute(shadow_answers.delete().where(shadow_answers.c.served_at < cutoff))
        # Feedback on no answer: given before its answer was written (kept: the answer comes),
        # or on one long gone. Only the second is older than every answer kept by age.
        orphans = connection.execute(
            feedback.delete().where(
                feedback.c.received_at < now - settings.retain_predictions_days * DAY_S,
                ~sa.exists().where(predictions.c.prediction_id == feedback.c.prediction_id),
            )
        ).rowcount
    return removed, answered + orphans


def nth_newest(connection: sa.Connection, n: int) -> float | None:
    """When the `n`-th newest answer was served; None if there are fewer."""
    query = (
        sa.select(predictions.c.served_at)
        .order_by(predictions.c.served_at.desc())
        .offset(n - 1)
        .limit(1)
    )
    return connection.execute(query).scalar()


def prune_reports(monitor_dir: Path, settings: Settings, now: float) -> int:
    """Remove report folders past their age or beyond the newest `retain_reports`; the newest
    stays whatever its age, and so do the files beside them (the latest verdict, the cooldown).
    Returns how many folders were removed."""
    if not monitor_dir.is_dir():
        return 0
    # Named by their UTC time (YYYYmmddTHHMMSS), so the names sort by age.
    folders = sorted((p for p in monitor_dir.iterdir() if p.is_dir()), reverse=True)
    cutoff = now - settings.retain_reports_days * DAY_S
    removed = 0
    for index, folder in enumerate(folders):
        if index == 0:
            continue
        if index >= settings.retain_reports or folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def prune(settings: Settings, now: float | None = None) -> Pruned:
    """Apply the retention settings to the prediction log and the monitor's reports."""
    now = time.time() if now is None else now
    settings.state_dir.mkdir(parents=True, exist_ok=True)  # where the SQLite log is by default
    engine = prediction_log.open_engine(settings.resolved_prediction_log_uri)
    try:
        answers, labels = prune_prediction_log(engine, settings, now)
    finally:
        engine.dispose()
    return Pruned(answers, labels, prune_reports(settings.monitor_dir, settings, now))


@flow(name="penguins-retention")
def retention() -> str:
    """Prune the prediction log and the drift reports by the retention settings."""
    pruned = prune(Settings())
    get_run_logger().info("retention: %s", pruned)
    return str(pruned)


def main() -> None:
    # Plain Python, no flow run: pruning needs no Prefect server (the deployment is the flow).
    print(f"level 2 retention: {prune(Settings())}")


if __name__ == "__main__":
    main()
