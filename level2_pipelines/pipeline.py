"""The level 2 training pipeline, orchestrated by Prefect:

    ingest -> validate -> train -> evaluate -> register -> promote -> deploy

    python -m level2_pipelines.pipeline_cli [--batch PATH] [--approval manual]

Every run is one MLflow run (validation docs, parameters, metrics, model, lineage) and, when
the batch is valid, one new registry version, promoted to `champion` only if it passes the
gate. A bad batch stops the flow at `validate`: it is quarantined with the failed checks and
nothing downstream runs. Promotion is the single alias move in `promote`, so a crash anywhere
before it leaves the champion as it was. Each stage measures its own work and its MLflow I/O
into the run's clock (`timing.py`); the command line (`pipeline_cli.py`) reports them.

One decision at a time: from the duplicate check to the promotion a run holds the registry's
decision lock, so two runs started together are judged one after the other, each against the
champion of its moment. A batch whose content a version was already trained on is skipped
(unless `force`), naming that version: a version counts once its decision is complete (its
`batch_checksum` tag is the decision's last write).

A tracking server lost mid-run ends the run with one line naming the server and the stage
(`run_outage.py`); the batch is not marked trained on, so running it again once the server
is back trains and decides it. The MLflow run it leaves RUNNING is ended FAILED by the next run.
"""

from pathlib import Path
from typing import Literal

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State

from level2_pipelines import prediction_log, registry, rollout
from level2_pipelines.data import (
    BATCH_ARTIFACT,
    Batch,
    Reference,
    held_out_rows,
    keep_batch,
    landed_path,
    make_batch,
    read_batch_file,
    reference_and_new_rows,
    watched_reference,
)
from level2_pipelines.deploy import follow_in_service, smoke_test
from level2_pipelines.evaluate import Verdict, judge
from level2_pipelines.evaluate import evaluate as held_out_metrics  # `evaluate` is the stage
from level2_pipelines.model import ModelLoadError, load_version
from level2_pipelines.model_card import log_card, version_card
from level2_pipelines.monitor import DriftVerdict, drift_verdict
from level2_pipelines.outcome import Outcome
from level2_pipelines.run_outage import end_abandoned_runs, mlflow_io, named_outage
from level2_pipelines.settings import Settings
from level2_pipelines.timing import MLFLOW, WORK, clocked, measure
from level2_pipelines.tracking import connect, log_to_run, tracked_run
from level2_pipelines.train import Candidate, fit, git_commit, record_training, training_rows
from level2_pipelines.validate import BatchRejected, validate_frame
from shared.data import data_checksum
from shared.simulate import simulate_batch

# Tasks pass data frames and clients, which are neither hashable nor worth caching.
stage = task(cache_policy=NO_CACHE)
BATCH_TAG = "batch_checksum"  # on a version whose decision is complete: what `trained_on` finds


@flow(name="penguins-training")
def training_pipeline(
    batch_path: str | None = None,
    approval: Literal["auto", "manual"] | None = None,
    simulate_rows: int | None = None,
    incoming_name: str | None = None,
    force: bool = False,
    drift_run_id: str | None = None,
) -> Outcome | State:
    """Train on a batch: a file (`batch_path`, or `incoming_name` for a file landed in the
    incoming folder), `simulate_rows` simulated birds, the served birds whose true species came
    back since the drift monitor's run `drift_run_id` found drift, or by default the 2009
    birds."""
    settings = Settings()
    with clocked() as clock:
        # Opening the store is MLflow's too: in a fresh process it imports SQLAlchemy and
        # Alembic and checks the database schema (~4 s here), the largest MLflow cost of a run.
        with mlflow_io("connect"):
            client = connect(settings)
        if incoming_name is not None:
            batch_path = str(landed_path(incoming_name, settings.incoming_dir))
        with mlflow_io("ingest"):
            drift = drift_verdict(client, drift_run_id) if drift_run_id is not None else None

        batch, reference = ingest(batch_path, simulate_rows, drift, settings)
        with registry.decision(settings), named_outage("bookkeeping"):
            earlier = registry.trained_on(client, settings.model_name, batch.checksum)
            if earlier is not None and not force:
                return skipped(batch, earlier, settings)
            end_abandoned_runs(client, settings)
            with batch_run(client, batch, drift, settings) as run:
                watched, reference_of_new = watched_rows(client, batch, drift, settings, run.run_id)
                rejected = validate(batch, watched, drift, settings, run.run_id)
                if rejected is not None:
                    # An expected outcome, not a crash: the run fails with the reasons (no
                    # traceback in the logs), and calling the flow raises `rejected`.
                    run.status = "FAILED"
                    return Failed(message=str(rejected), data=rejected)
                candidate = train(batch, reference, reference_of_new, settings, run.run_id)
                verdict = evaluate(candidate, settings)
                version = register(candidate, verdict, batch, reference, settings)
                outcome = Outcome(
                    batch.batch_id,
                    run.run_id,
                    version=version,
                    reasons=list(verdict.reasons),
                    metrics=candidate.metrics,
                    clock=clock,
                )
                if verdict.passed:  # else registered and rejected: the champion stays
                    approval = approval or settings.approval
                    outcome.promoted_to, refused = promote(version, verdict, approval, settings)
                    if outcome.promoted_to == registry.CHALLENGER and approval == "auto":
                        outcome.rollout = settings.rollout
                    outcome.reasons += [refused] if refused else []
                mark_trained_on(client, version, batch, settings)
        if outcome.promoted_to == registry.CHAMPION:
            # After the decision: the alias has moved whatever the service says.
            outcome.deployed = deploy(version, settings)
    return outcome


# --- The stages, in the flow's order --------------------------------------------------------


@stage(retries=2, retry_delay_seconds=[1, 5])  # file reads can fail on a shared disk
def ingest(
    batch_path: str | None,
    simulate_rows: int | None,
    drift: DriftVerdict | None,
    settings: Settings,
) -> tuple[Batch, pd.DataFrame]:
    """The new batch (a file, simulated birds, the served birds whose species came back since
    drift was detected, or the 2009 birds) with an id and hash, and the reference rows."""
    with measure(WORK, "ingest"):
        reference, new_rows = reference_and_new_rows(settings.seed)
        if drift is not None:
            engine = prediction_log.open_engine(settings.resolved_prediction_log_uri)
            try:
                labelled = prediction_log.labelled_rows(engine, since=drift.since)
            finally:
                engine.dispose()
            source = f"{len(labelled)} served birds confirmed since drift ({drift.drifted})"
            return make_batch(labelled, source), reference
        if batch_path is not None:
            return make_batch(read_batch_file(Path(batch_path)), batch_path), reference
        if simulate_rows is not None:
            simulated = simulate_batch(simulate_rows, seed=settings.seed)
            return make_batch(simulated, f"{simulate_rows} simulated birds"), reference
        return make_batch(new_rows, "2009 birds of the training split"), reference


@stage
def validate(
    batch: Batch,
    watched: pd.DataFrame,
    drift: DriftVerdict | None,
    settings: Settings,
    run_id: str,
) -> BatchRejected | None:
    """Run the GX suite and keep the data docs; quarantine a failing batch and say why.
    Distribution bounds come from the rows the champion is watched against; for the rows of a
    drift the monitor confirmed, the drifted columns' bounds defer to its verdict, while every
    contract check (columns, types, ranges, categories, missing values) still holds."""
    docs_dir = settings.data_docs_dir / batch.batch_id
    deferred = set(drift.drifted) if drift is not None else set()
    deferral = (
        {"validation_deferred": f"{sorted(deferred)} to monitor run {drift.monitor_run_id}"}
        if drift is not None
        else {}
    )
    with measure(WORK, "validate"):
        report = validate_frame(
            batch.frame,
            watched,
            settings.min_batch_rows,
            docs_dir,
            batch.batch_id,
            deferred=deferred,
        )
    with mlflow_io("validate"):
        client = MlflowClient()
        client.log_artifacts(run_id, str(docs_dir), "data_docs")
        log_to_run(
            client,
            run_id,
            metrics={"expectations_failed": len(report.failed)},
            tags={"validation": "passed" if report.success else "failed"} | deferral,
        )
    if report.success:
        kept = keep_batch(batch, settings.batches_dir / batch.batch_id, settings.incoming_dir)
        with measure(MLFLOW, "validate"):  # where every worker can read it as a reference
            client.log_artifacts(run_id, str(kept), BATCH_ARTIFACT)
        return None
    kept = keep_batch(batch, settings.quarantine_dir / batch.batch_id, settings.incoming_dir)
    (kept / "failed_expectations.txt").write_text("\n".join(report.failed) + "\n")
    return BatchRejected(
        f"batch {batch.batch_id} failed {len(report.failed)} of {report.evaluated} "
        f"expectations and was quarantined in {kept}:\n  - "
        + "\n  - ".join(report.failed)
        + f"\ndata docs: {report.docs_index}"
    )


@stage
def train(
    batch: Batch,
    reference: pd.DataFrame,
    watched: Reference,
    settings: Settings,
    run_id: str,
) -> Candidate:
    """Fit on reference + batch; log parameters, metrics, model and lineage to the run."""
    with measure(WORK, "train"):
        training = training_rows(reference, batch.frame)
        pipeline = fit(training, settings.seed)
        held_out = held_out_rows(settings.seed)
        metrics = held_out_metrics(pipeline, held_out)
    lineage = {
        "data_checksum": data_checksum(training),
        "git_commit": git_commit(),
        "batch_id": batch.batch_id,
        "batch_checksum": batch.checksum,
        "flow_run_id": str(flow_run.id),
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
        **watched.tags(),  # what the monitor compares its traffic with
    }
    with mlflow_io("train"):
        candidate = record_training(
            run_id, pipeline, training, held_out, metrics, settings.seed, lineage
        )
        # record_training's `mlflow.start_run` block ended the run FINISHED; it goes on until
        # the decision is made, and a run cut short must read as unfinished.
        MlflowClient().update_run(run_id, status="RUNNING")
    return candidate


@stage
def evaluate(candidate: Candidate, settings: Settings) -> Verdict:
    """Judge the candidate against the champion on the same held-out rows, then smoke-test it.
    A champion that cannot be loaded is judged by the metrics its run recorded on those rows,
    so a good candidate can still replace it; a registry that cannot be read stops the run."""
    client = MlflowClient()
    logger = get_run_logger()
    held_out = held_out_rows(settings.seed)
    with mlflow_io("evaluate"):
        champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
        champion_metrics = None
        if champion is not None:
            try:
                champion_pipeline = load_version(client, settings.model_name, champion.version)[0]
            except ModelLoadError as error:
                logger.warning("judging against the champion's recorded metrics: %s", error)
                champion_metrics = client.get_run(champion.run_id).data.metrics
    with measure(WORK, "evaluate"):
        if champion is not None and champion_metrics is None:
            champion_metrics = held_out_metrics(champion_pipeline, held_out)
        verdict = judge(
            candidate.metrics,
            champion_metrics,
            macro_f1_floor=settings.macro_f1_floor,
            regression_tolerance=settings.regression_tolerance,
            island_accuracy_floor=settings.island_accuracy_floor,
        )
        verdict.judged_against = str(champion.version) if champion is not None else None
        verdict.reasons += smoke_test(candidate, settings)
        verdict.passed = not verdict.reasons
    with mlflow_io("evaluate"):
        log_to_run(
            client,
            candidate.run_id,
            metrics={
                f"champion_{name}": value
                for name, value in (champion_metrics or {}).items()
                if not name.startswith("champion_")
            },
            tags={"gate": "passed" if verdict.passed else "rejected"},
        )
    return verdict


@stage
def register(
    candidate: Candidate,
    verdict: Verdict,
    batch: Batch,
    reference: pd.DataFrame,
    settings: Settings,
) -> str:
    """A new registry version, tagged with its lineage, validation status and gate outcome, its
    model card logged with its run; not yet with the batch's checksum (`mark_trained_on`)."""
    lineage = {k: v for k, v in candidate.lineage.items() if k != BATCH_TAG}
    tags = lineage | {
        "validation": "passed",
        "gate": "passed" if verdict.passed else "rejected",
        "gate_reasons": "; ".join(verdict.reasons) or "-",
        "judged_against": verdict.judged_against or "none",
    }
    with mlflow_io("register"):
        version = registry.register(
            MlflowClient(), settings.model_name, candidate.model_uri, candidate.run_id, tags
        )
    with measure(WORK, "register"):
        card = version_card(version, candidate, batch, reference, tags, settings)
    with mlflow_io("register"):
        log_card(MlflowClient(), candidate.run_id, card)
    return version


@stage
def promote(
    version: str, verdict: Verdict, approval: str, settings: Settings
) -> tuple[str | None, str]:
    """`champion` (or `challenger`, awaiting `make level2-approve`) moves to this version, if
    the champion is still the one it was judged against. Returns (alias or None, why not)."""
    alias = registry.CHAMPION if approval == "auto" else registry.CHALLENGER
    client = MlflowClient()
    with mlflow_io("promote"):
        try:
            if alias == registry.CHAMPION and settings.rollout != "direct":
                # Released on trial beside the champion; the judge decides on live evidence.
                rollout.start(
                    client,
                    settings.model_name,
                    version,
                    settings.rollout,
                    settings.canary_share,
                    verdict.judged_against,
                )
                return registry.CHALLENGER, ""
            registry.promote(client, settings.model_name, version, alias, verdict.judged_against)
        except registry.StaleChampion as error:
            client.set_model_version_tag(settings.model_name, version, "promotion", str(error))
            return None, str(error)
    return alias, ""


@stage
def deploy(version: str, settings: Settings) -> str:
    """Have the running service serve the new champion, and confirm it does."""
    return follow_in_service(settings, version)


# --- What the flow decides with -------------------------------------------------------------


def mark_trained_on(client: MlflowClient, version: str, batch: Batch, settings: Settings) -> None:
    """The decision's last write: from now on this content counts as trained on. A run that
    stops before it (a lost tracking server, a killed worker) leaves a version that does not
    count, so the batch is trained and decided again."""
    with mlflow_io("register"):
        client.set_model_version_tag(settings.model_name, version, BATCH_TAG, batch.checksum)


def skipped(batch: Batch, earlier: ModelVersion, settings: Settings) -> Outcome:
    """No run: a version was trained on this content already."""
    return Outcome(
        batch_id=batch.batch_id,
        skipped=f"this content was already trained on by MLflow run {earlier.run_id} "
        f"as {settings.model_name} v{earlier.version}; nothing new to learn "
        "(`make level2 FORCE=1` or --force trains on it again)",
    )


def batch_run(client: MlflowClient, batch: Batch, drift: DriftVerdict | None, settings: Settings):
    """The MLflow run of this batch, from validation to promotion (a context manager)."""
    tags = {"batch_id": batch.batch_id, "batch_source": batch.source}
    if drift is not None:
        tags["drift_verdict"] = drift.monitor_run_id  # the evidence this run was asked with
    return tracked_run(client, settings.experiment, f"batch {batch.batch_id}", tags)


def watched_rows(
    client: MlflowClient, batch: Batch, drift: DriftVerdict | None, settings: Settings, run_id: str
) -> tuple[pd.DataFrame, Reference]:
    """The rows the batch is held to (the champion's reference), and the new model's reference:
    it moves to rows whose drift the monitor confirmed (this run logs them, `validate`)."""
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    watched, reference = watched_reference(client, champion.tags if champion else {}, settings)
    return watched, Reference(batch.batch_id, run_id) if drift is not None else reference
