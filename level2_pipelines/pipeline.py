"""The level 2 training pipeline, orchestrated by Prefect:

    ingest -> validate -> train -> evaluate -> register -> promote -> deploy

    python -m level2_pipelines.run [--batch PATH] [--approval manual]

Every run is one MLflow run (validation docs, parameters, metrics, model, lineage) and, when
the batch is valid, one new registry version, promoted to `champion` only if it passes the
gate. A bad batch stops the flow at `validate`: it is quarantined with the failed checks and
nothing downstream runs. Promotion is the single alias move in `promote`, so a crash anywhere
before it leaves the champion as it was.

One decision at a time: from the duplicate check to the promotion a run holds the registry's
decision lock, so two runs started together are judged one after the other, each against the
champion of its moment. A batch whose content a version was already trained on is skipped
(unless `force`), naming that version.
"""

import asyncio
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import pandas as pd
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State

from level2_pipelines import prediction_log, registry
from level2_pipelines.api import ServedModel, create_app
from level2_pipelines.data import (
    REFERENCE_TAG,
    Batch,
    held_out_rows,
    make_batch,
    read_batch_file,
    reference_and_new_rows,
    watched_reference,
)
from level2_pipelines.deploy import follow_in_service
from level2_pipelines.evaluate import Verdict, evaluate, judge
from level2_pipelines.model import Lineage, ModelLoadError, load_version
from level2_pipelines.predict import serving_predictor
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect, log_to_run
from level2_pipelines.train import Candidate, fit, git_commit, record_training, training_rows
from level2_pipelines.validate import validate_frame
from shared.contract import EXPECTED_SPECIES, INVALID_EXAMPLES, VALID_EXAMPLES
from shared.data import data_checksum
from shared.simulate import simulate_batch


class BatchRejected(RuntimeError):
    """The batch failed validation; the message lists the failed checks and where it is kept."""


class Clock:
    """Seconds spent per stage, split into the pipeline's own work and MLflow I/O.

    A plain class on purpose: Prefect rebuilds dicts and dataclasses passed to tasks, and this
    one must be the same object in every task."""

    def __init__(self) -> None:
        self.seconds: dict[tuple[str, str], float] = {}

    @contextmanager
    def measure(self, kind: str, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            key = (kind, stage)
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start

    def total(self, kind: str) -> float:
        return sum(s for (k, _), s in self.seconds.items() if k == kind)


@dataclass(frozen=True)
class DriftVerdict:
    """The drift monitor's verdict a retraining was asked for with (its MLflow run)."""

    monitor_run_id: str
    since: float  # the drifted window's first answer
    drifted: tuple[str, ...]  # the checks that flagged it


def drift_verdict(client: MlflowClient, monitor_run_id: str) -> DriftVerdict:
    """Read the verdict from the monitor's own MLflow run: the evidence, not an event's word."""
    tags = client.get_run(monitor_run_id).data.tags
    if tags.get("verdict") != "drift":
        raise BatchRejected(f"drift_run_id: MLflow run {monitor_run_id} is not a drift verdict")
    drifted = tuple(c for c in tags.get("drifted", "").split(",") if c and c != "-")
    return DriftVerdict(monitor_run_id, float(tags["since"]), drifted)


@dataclass
class Outcome:
    batch_id: str
    run_id: str | None = None  # None when the batch was skipped
    skipped: str = ""  # why no run was made (the same content was trained on before)
    version: str | None = None
    promoted_to: str | None = None  # "champion", "challenger", or None when rejected
    reasons: list[str] = field(default_factory=list)
    deployed: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    clock: Clock = field(default_factory=Clock)


# Tasks pass data frames and clients, which are neither hashable nor worth caching.
stage = task(cache_policy=NO_CACHE)


class UnsafeBatchName(ValueError):
    """A landed-file name that would reach outside the incoming folder."""


def landed_path(name: str, settings: Settings) -> Path:
    """The file `name` in the incoming folder: events name a file there, never a path."""
    incoming = settings.incoming_dir.resolve()
    path = (incoming / name).resolve()
    if path.parent != incoming or Path(name).name != name:
        raise UnsafeBatchName(
            f"incoming_name: {name!r} is not a file name in {incoming}; "
            "new-data events can only start runs on files landed there"
        )
    return path


@stage(retries=2, retry_delay_seconds=[1, 5])  # file reads can fail on a shared disk
def ingest(
    batch_path: str | None,
    simulate_rows: int | None,
    drift: DriftVerdict | None,
    settings: Settings,
    clock: Clock,
) -> tuple[Batch, pd.DataFrame]:
    """The new batch (a file, simulated birds, the served birds whose species came back since
    drift was detected, or the 2009 birds) with an id and hash, and the reference rows."""
    with clock.measure("work", "ingest"):
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
    clock: Clock,
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
    with clock.measure("work", "validate"):
        report = validate_frame(
            batch.frame,
            watched,
            settings.min_batch_rows,
            docs_dir,
            batch.batch_id,
            deferred=deferred,
        )
    with clock.measure("mlflow", "validate"):
        client = MlflowClient()
        client.log_artifacts(run_id, str(docs_dir), "data_docs")
        log_to_run(
            client,
            run_id,
            metrics={"expectations_failed": len(report.failed)},
            tags={"validation": "passed" if report.success else "failed"} | deferral,
        )
    if report.success:
        keep(batch, settings.batches_dir / batch.batch_id, settings)
        return None
    kept = keep(batch, settings.quarantine_dir / batch.batch_id, settings)
    (kept / "failed_expectations.txt").write_text("\n".join(report.failed) + "\n")
    return BatchRejected(
        f"batch {batch.batch_id} failed {len(report.failed)} of {report.evaluated} "
        f"expectations and was quarantined in {kept}:\n  - "
        + "\n  - ".join(report.failed)
        + f"\ndata docs: {report.docs_index}"
    )


def keep(batch: Batch, folder: Path, settings: Settings) -> Path:
    """Keep the batch as it arrived: moved out of the incoming folder, copied from elsewhere."""
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(batch.source)
    if source.is_file() and source.resolve().parent == settings.incoming_dir.resolve():
        shutil.move(source, folder / source.name)
    elif source.is_file():
        shutil.copy2(source, folder / source.name)
    else:
        batch.frame.to_csv(folder / "batch.csv", index=False)
    return folder


@stage
def train(
    batch: Batch,
    reference: pd.DataFrame,
    watched_name: str,
    settings: Settings,
    run_id: str,
    clock: Clock,
) -> Candidate:
    """Fit on reference + batch; log parameters, metrics, model and lineage to the run."""
    with clock.measure("work", "train"):
        training = training_rows(reference, batch.frame)
        pipeline = fit(training, settings.seed)
        held_out = held_out_rows(settings.seed)
        metrics = evaluate(pipeline, held_out)
    lineage = {
        "data_checksum": data_checksum(training),
        "git_commit": git_commit(),
        "batch_id": batch.batch_id,
        "batch_checksum": batch.checksum,
        "flow_run_id": str(flow_run.id),
        "trained_at": pd.Timestamp.now(tz="UTC").isoformat(),
        REFERENCE_TAG: watched_name,  # what the monitor compares its traffic with
    }
    with clock.measure("mlflow", "train"):
        return record_training(
            run_id, pipeline, training, held_out, metrics, settings.seed, lineage
        )


@stage(name="evaluate")
def evaluate_candidate(candidate: Candidate, settings: Settings, clock: Clock) -> Verdict:
    """Judge the candidate against the champion on the same held-out rows, then smoke-test it.
    A champion that cannot be loaded is judged by the metrics its run recorded on those rows,
    so a good candidate can still replace it; a registry that cannot be read stops the run."""
    client = MlflowClient()
    logger = get_run_logger()
    held_out = held_out_rows(settings.seed)
    with clock.measure("mlflow", "evaluate"):
        champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
        champion_metrics = None
        if champion is not None:
            try:
                champion_pipeline = load_version(client, settings.model_name, champion.version)[0]
            except ModelLoadError as error:
                logger.warning("judging against the champion's recorded metrics: %s", error)
                champion_metrics = client.get_run(champion.run_id).data.metrics
    with clock.measure("work", "evaluate"):
        if champion is not None and champion_metrics is None:
            champion_metrics = evaluate(champion_pipeline, held_out)
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
    with clock.measure("mlflow", "evaluate"):
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


def smoke_test(candidate: Candidate, settings: Settings) -> list[str]:
    """Serve the candidate in-process through the service's own app; check the contract."""
    stub = Lineage(
        name=settings.model_name,
        version="candidate",
        run_id=candidate.run_id,
        git_commit="",
        data_checksum=candidate.training_checksum,
        batch_id="",
        flow_run_id="",
        trained_at="",
        metrics={},
    )
    app = create_app(
        settings, ServedModel(lineage=stub, predictor=serving_predictor(candidate.pipeline))
    )

    async def probe() -> list[str]:
        problems = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://candidate") as http:
            for name, payload in VALID_EXAMPLES.items():
                response = await http.post("/predict", json=payload)
                expected = EXPECTED_SPECIES.get(name)
                if response.status_code != 200:
                    problems.append(f"smoke test: {name} answered {response.status_code}")
                elif expected and response.json()["species"] != expected:
                    problems.append(
                        f"smoke test: {name} classified as {response.json()['species']}"
                    )
            for example in INVALID_EXAMPLES:
                response = await http.post(
                    "/predict", content=example.body, headers={"content-type": "application/json"}
                )
                if not 400 <= response.status_code < 500:
                    problems.append(f"smoke test: {example.name} answered {response.status_code}")
        return problems

    return asyncio.run(probe())


@stage
def register(
    candidate: Candidate, verdict: Verdict, batch: Batch, settings: Settings, clock: Clock
) -> str:
    """A new registry version, tagged with its lineage, validation status and gate outcome."""
    tags = candidate.lineage | {
        "validation": "passed",
        "gate": "passed" if verdict.passed else "rejected",
        "gate_reasons": "; ".join(verdict.reasons) or "-",
        "judged_against": verdict.judged_against or "none",
    }
    with clock.measure("mlflow", "register"):
        return registry.register(
            MlflowClient(), settings.model_name, candidate.model_uri, candidate.run_id, tags
        )


@stage
def promote(
    version: str, verdict: Verdict, approval: str, settings: Settings, clock: Clock
) -> tuple[str | None, str]:
    """`champion` (or `challenger`, awaiting `make level2-approve`) moves to this version, if
    the champion is still the one it was judged against. Returns (alias or None, why not)."""
    alias = registry.CHAMPION if approval == "auto" else registry.CHALLENGER
    client = MlflowClient()
    with clock.measure("mlflow", "promote"):
        try:
            registry.promote(client, settings.model_name, version, alias, verdict.judged_against)
        except registry.StaleChampion as error:
            client.set_model_version_tag(settings.model_name, version, "promotion", str(error))
            return None, str(error)
    return alias, ""


@stage
def deploy(version: str, settings: Settings) -> str:
    """Have the running service serve the new champion, and confirm it does."""
    return follow_in_service(settings, version)


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
    clock = Clock()
    # Opening the store is MLflow's too: in a fresh process it imports SQLAlchemy and Alembic
    # and checks the database schema (~4 s here), the largest MLflow cost of a run.
    with clock.measure("mlflow", "connect"):
        client = connect(settings)
    if incoming_name is not None:
        batch_path = str(landed_path(incoming_name, settings))
    drift = drift_verdict(client, drift_run_id) if drift_run_id is not None else None
    batch, reference = ingest(batch_path, simulate_rows, drift, settings, clock)
    with registry.decision(settings):
        earlier = registry.trained_on(client, settings.model_name, batch.checksum)
        if earlier is not None and not force:
            return Outcome(
                batch_id=batch.batch_id,
                skipped=f"this content was already trained on by MLflow run {earlier.run_id} "
                f"as {settings.model_name} v{earlier.version}; nothing new to learn "
                "(`make level2 FORCE=1` or --force trains on it again)",
            )
        outcome = decide(
            batch, reference, drift, approval or settings.approval, settings, client, clock
        )
    if isinstance(outcome, Outcome) and outcome.promoted_to == registry.CHAMPION:
        # After the decision: the alias has moved whatever the service says.
        outcome.deployed = deploy(outcome.version, settings)
    return outcome


def decide(
    batch: Batch,
    reference: pd.DataFrame,
    drift: DriftVerdict | None,
    approval: str,
    settings: Settings,
    client: MlflowClient,
    clock: Clock,
) -> Outcome | State:
    """validate -> train -> evaluate -> register -> promote, as one MLflow run."""
    tags = {"batch_id": batch.batch_id, "batch_source": batch.source}
    if drift is not None:
        tags["drift_verdict"] = drift.monitor_run_id  # the evidence this run was asked with
    run = client.create_run(
        client.get_experiment_by_name(settings.experiment).experiment_id,
        run_name=f"batch {batch.batch_id}",
        tags=tags,
    )
    outcome = Outcome(batch_id=batch.batch_id, run_id=run.info.run_id, clock=clock)
    # The reference moves with each champion: rows whose drift the monitor confirmed become
    # the reference of the model trained on them, and of every model after it.
    champion = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    watched, watched_name = watched_reference(
        champion.tags if champion else {}, settings.seed, settings.batches_dir
    )
    if drift is not None:
        watched_name = batch.batch_id
    try:
        rejected = validate(batch, watched, drift, settings, outcome.run_id, clock)
        if rejected is not None:
            # An expected outcome, not a crash: the run fails with the reasons (no traceback
            # in the logs), and calling the flow raises `rejected`.
            client.set_terminated(outcome.run_id, "FAILED")
            return Failed(message=str(rejected), data=rejected)
        candidate = train(batch, reference, watched_name, settings, outcome.run_id, clock)
        outcome.metrics = candidate.metrics
        verdict = evaluate_candidate(candidate, settings, clock)
        outcome.version = register(candidate, verdict, batch, settings, clock)
        outcome.reasons = verdict.reasons
        if verdict.passed:
            outcome.promoted_to, refused = promote(
                outcome.version, verdict, approval, settings, clock
            )
            outcome.reasons += [refused] if refused else []
    except BaseException:
        client.set_terminated(outcome.run_id, "FAILED")
        raise
    client.set_terminated(outcome.run_id, "FINISHED")
    return outcome


def report(outcome: Outcome, settings: Settings, seconds: float) -> None:
    print("\n".join(report_lines(outcome, settings, seconds)))


def report_lines(outcome: Outcome, settings: Settings, seconds: float) -> list[str]:
    """What `make level2` prints about a run; the warm worker sends these lines to its client,
    so a run reads the same wherever it ran."""
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
        if outcome.promoted_to == registry.CHALLENGER:
            lines.append("level 2: waiting for approval: `make level2-approve`")
        lines.append(f"level 2: {outcome.deployed or 'not deployed until approved'}")
    work, mlflow_io = outcome.clock.total("work"), outcome.clock.total("mlflow")
    lines.append(
        f"level 2: flow {seconds:.1f} s = pipeline work {work:.1f} s + MLflow {mlflow_io:.1f} s "
        f"+ Prefect {seconds - work - mlflow_io:.1f} s"
    )
    return lines
