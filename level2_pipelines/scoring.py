"""Batch scoring: a file of birds scored with the current champion, with lineage. Much of real
ML never serves a request: a file of rows is scored on a schedule.

    make level2-score FILE=path.csv
    python -m level2_pipelines.scoring_cli PATH [--force]

and, while `make level2-up` runs, the deployments `penguins-scoring/on-demand` (parameter
`file`) and `penguins-scoring/scheduled`, which scores every CSV or Parquet file in
LEVEL2_SCORING_DIR (default state/level2/to-score/) on LEVEL2_SCORING_CRON; a content scored
once (its SHA-256 is on a scoring run in MLflow) is not scored again.

check -> load champion -> score -> write -> record

A file that cannot be read, lacks a feature column or has no rows is refused whole, naming it
and the failed checks, and stays as it is; a row breaking a per-row check of the contract goes
to `<stem>.rejected.csv` with its reasons, never scored. The champion is loaded as the service
loads it (skops, SHA-256 and fingerprint checked). Beside the input: `<stem>.predictions.csv`
and `<stem>.scoring.json` (version, runs, input checksum, counts), each written under a
temporary name then renamed, never over an earlier output unless `force`. One MLflow run per
file in `<experiment>-scoring`; the Prefect flow run is named for the file. In depth:
docs/level2-in-depth.md, "Batch scoring".
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State

from level2_pipelines import registry
from level2_pipelines.data import read_batch_file
from level2_pipelines.model import ModelLoadError, load_version
from level2_pipelines.predict import serving_predictor
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect, experiment_id, log_to_run, tracked_run
from shared.contract import CATEGORIES, FEATURES, NUMERIC_FEATURES, OPTIONAL_FEATURES, RANGES

# The endings of what scoring writes: never taken for an input by the folder scan.
OUTPUTS = (".predictions.csv", ".rejected.csv", ".scoring.json")
SCORED, REFUSED = "scored", "refused"  # the `scoring_outcome` tag of a scoring run


class ScoringError(RuntimeError):
    """A file that cannot be scored (missing, unreadable, refused by its checks, outputs in
    the way) or no champion to score it with; the message names the file or the model."""


@dataclass
class Scored:
    """What a scoring wrote and recorded; the sidecar's content."""

    input: str
    input_checksum: str
    model_name: str
    model_version: str
    model_run_id: str  # the training run of the model used
    scoring_run_id: str
    flow_run_id: str
    rows: int
    rows_scored: int
    rows_rejected: int
    predictions: str
    rejected: str | None
    scored_at: str
    species: dict[str, int] = field(default_factory=dict)


# Data frames and clients are not worth caching. The steps that can refuse the input (reading,
# loading the champion, writing) are plain functions: a failed task logs a traceback, and a
# refusal is told in one line.
stage = task(cache_policy=NO_CACHE)


def scoring_dir(settings: Settings) -> Path:
    return settings.scoring_dir or settings.state_dir / "to-score"


def _run_name() -> str:
    file = flow_run.parameters.get("file")
    return f"score {Path(file).name}" if file else "score the to-score folder"


@flow(name="penguins-scoring", flow_run_name=_run_name)
def scoring_pipeline(file: str | None = None, force: bool = False) -> Scored | list[str] | State:
    """Score `file` with the champion; without a file, every file of the scoring folder whose
    content was not scored yet, each in a flow run of its own."""
    settings = Settings()
    client = connect(settings)
    experiment_id(client, settings, experiment_name(settings))  # made on first use
    if file is None:
        return [_score_in_turn(path) for path in unscored_files(client, settings)]
    try:
        path = Path(file)
        frame, checksum, failed = read_input(path)
        if failed:
            refuse(client, settings, path, checksum, failed)
        outputs = output_paths(path, force)
        champion, version, model_run_id = load_champion(client, settings)
        good, rejected = check_rows(frame)
        with tracked_run(
            client,
            experiment_name(settings),
            f"score {path.name}",
            tags={"input_checksum": checksum, "input": str(path.resolve())},
        ) as run:
            probabilities = score(champion, good)
            scored = write_outputs(
                path, outputs, good, rejected, probabilities, champion.classes, force,
                Scored(
                    input=str(path.resolve()), input_checksum=checksum,
                    model_name=settings.model_name, model_version=version,
                    model_run_id=model_run_id, scoring_run_id=run.run_id,
                    flow_run_id=str(flow_run.id), rows=len(frame), rows_scored=len(good),
                    rows_rejected=len(rejected), predictions=str(outputs[0].resolve()),
                    rejected=str(outputs[1].resolve()) if len(rejected) else None, scored_at=_now(),
                ),
            )  # fmt: skip
            record(client, scored, outputs)
    except ScoringError as error:
        # The input's fault, not a crash: the run fails with the reason (no traceback), and
        # calling the flow raises `error`.
        return Failed(message=str(error), data=error)
    get_run_logger().info(
        "scored %s: %d rows with %s v%s, %d rejected", path, scored.rows_scored,
        scored.model_name, scored.model_version, scored.rows_rejected,
    )  # fmt: skip
    return scored


def _score_in_turn(path: Path) -> str:
    """One file of the folder scan, in its own flow run; a file refused does not stop the rest."""
    state = scoring_pipeline(str(path), return_state=True)
    return f"{path.name}: {state.name}" + (f" ({state.message})" if state.is_failed() else "")


def experiment_name(settings: Settings) -> str:
    """Scoring's own experiment: the training experiment counts training runs only."""
    return f"{settings.experiment}-scoring"


# --- The stages, in the flow's order --------------------------------------------------------


def read_input(path: Path) -> tuple[pd.DataFrame, str, list[str]]:
    """The file as it arrived, the SHA-256 of its bytes (what `sha256sum` prints), and the
    batch-level checks it fails."""
    if not path.is_file():
        raise ScoringError(no_such_file(path))
    data = path.read_bytes()
    try:
        frame = read_batch_file(path)
    except Exception as error:  # a parse error, a wrong suffix: the file's fault
        return pd.DataFrame(), hashlib.sha256(data).hexdigest(), [f"cannot be read: {error}"]
    failed = []
    missing = [column for column in FEATURES if column not in frame.columns]
    if missing:  # a renamed or missing column: the export changed shape
        failed.append(f"columns: {missing} missing (needed: {list(FEATURES)})")
    if frame.empty:  # a truncated export
        failed.append("rows: none")
    return frame.reset_index(drop=True), hashlib.sha256(data).hexdigest(), failed


def refuse(
    client: MlflowClient, settings: Settings, path: Path, checksum: str, failed: list[str]
) -> None:
    """Record a refused file (a failed scoring run, so the folder scan does not take the same
    content again) and raise ScoringError naming it and its failed checks."""
    reason = "; ".join(failed)
    with tracked_run(
        client,
        experiment_name(settings),
        f"score {path.name}",
        tags={"input_checksum": checksum, "input": str(path.resolve()), "refused": reason},
    ) as run:
        client.set_tag(run.run_id, "scoring_outcome", REFUSED)
        run.status = "FAILED"
    raise ScoringError(f"batch file {path} refused, nothing scored (the file is kept): {reason}")


def no_such_file(path: Path) -> str:
    return f"batch file {path}: no such file"


def output_paths(path: Path, force: bool) -> tuple[Path, Path, Path]:
    """Predictions, rejected rows and sidecar beside the input; ScoringError if any is there
    already and `force` is not given: an output is never replaced silently."""
    outputs = tuple(path.with_name(path.stem + ending) for ending in OUTPUTS)
    found = [str(p) for p in outputs if p.exists()]
    if found and not force:
        raise ScoringError(
            f"batch file {path} was scored before: {found} exist; move them away, or score "
            "again with --force (FORCE=1) to replace them"
        )
    return outputs


def load_champion(client: MlflowClient, settings: Settings):
    """The champion as the service loads it (skops, SHA-256 and fingerprint checked), as a
    predictor, with its version and training run id."""
    found = registry.version_by_alias(client, settings.model_name, registry.CHAMPION)
    if found is None:
        raise ScoringError(
            f"{settings.model_name} has no champion yet: nothing to score with (`make level2` "
            "trains and promotes one)"
        )
    try:
        pipeline, lineage = load_version(client, settings.model_name, str(found.version))
    except ModelLoadError as error:
        raise ScoringError(f"the champion cannot be loaded: {error}") from None
    return serving_predictor(pipeline), lineage.version, lineage.run_id


@stage
def check_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows that meet the contract's per-row checks, and the others with a `reason`
    naming every check each breaks. Both keep the input's columns and a `row` column: the
    row's position in the input, from 0."""
    reasons = pd.Series([[] for _ in range(len(frame))], index=frame.index)

    def flag(bad: pd.Series, text) -> None:
        for index in bad[bad].index:
            reasons[index].append(text(frame.at[index, column]))

    for column in NUMERIC_FEATURES:
        values = pd.to_numeric(frame[column], errors="coerce")
        absent = frame[column].isna()
        flag(absent, lambda v, c=column: f"{c}: missing")
        flag(values.isna() & ~absent, lambda v, c=column: f"{c}: {v!r} is not a number")
        low, high = RANGES[column]
        flag(~values.between(low, high) & values.notna(), lambda v, c=column, lo=low, hi=high: (
            f"{c}: {v} outside the physical range [{lo}, {hi}]"
        ))  # fmt: skip
    for column, allowed in CATEGORIES.items():
        absent = frame[column].isna()
        if column not in OPTIONAL_FEATURES:
            flag(absent, lambda v, c=column: f"{c}: missing")
        flag(~frame[column].isin(allowed) & ~absent, lambda v, c=column, a=allowed: (
            f"{c}: {v!r} not one of {list(a)}"
        ))  # fmt: skip
    framed = frame.assign(row=np.arange(len(frame)))[["row", *frame.columns]]
    bad = reasons.map(bool)
    good = framed[~bad].astype({c: "float64" for c in NUMERIC_FEATURES})
    return good, framed[bad].assign(reason=reasons[bad].map("; ".join))


@stage
def score(predictor, good: pd.DataFrame) -> np.ndarray:
    """Probabilities per row (columns in `predictor.classes` order), as the service answers."""
    rows = good[list(FEATURES)].to_dict("records")
    return predictor.predict_proba(rows) if rows else np.empty((0, len(predictor.classes)))


def write_outputs(
    path: Path,
    outputs: tuple[Path, Path, Path],
    good: pd.DataFrame,
    rejected: pd.DataFrame,
    probabilities: np.ndarray,
    classes: tuple[str, ...],
    force: bool,
    scored: Scored,
) -> Scored:
    """Predictions, rejected rows, then the sidecar (last: it says the others are complete)."""
    predictions_file, rejected_file, sidecar = outputs
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)] if len(good) else []
    predictions = good.assign(
        predicted_species=predicted,
        **{f"probability_{c}": probabilities[:, i] for i, c in enumerate(classes)},
        model_version=scored.model_version,
    )
    scored.species = {c: int((predictions["predicted_species"] == c).sum()) for c in classes}
    _write(predictions_file, predictions.to_csv(index=False), force)
    if len(rejected):
        _write(rejected_file, rejected.to_csv(index=False), force)
    _write(sidecar, json.dumps(asdict(scored), indent=2) + "\n", force)
    return scored


def _write(path: Path, text: str, force: bool) -> None:
    """Atomically: a reader sees the whole file or none; without `force`, never over another."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    try:
        if force:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if `path` appeared since output_paths looked
    except FileExistsError:
        raise ScoringError(f"{path} appeared while scoring; it is left as it is") from None
    finally:
        temporary.unlink(missing_ok=True)


@stage
def record(client: MlflowClient, scored: Scored, outputs: tuple[Path, ...]) -> None:
    """The scoring run's parameters, counts and outputs; `scoring_outcome` last, so the folder
    scan counts a content as scored only once everything is recorded."""
    log_to_run(
        client,
        scored.scoring_run_id,
        params={"model_name": scored.model_name, "model_version": scored.model_version},
        metrics={
            "rows": scored.rows,
            "rows_scored": scored.rows_scored,
            "rows_rejected": scored.rows_rejected,
            **{f"predicted_{s}": n for s, n in scored.species.items()},
        },
        tags={
            "model_version": scored.model_version,
            "model_run_id": scored.model_run_id,
            "flow_run_id": scored.flow_run_id,
        },
    )
    for output in outputs:
        if output.exists():
            client.log_artifact(scored.scoring_run_id, str(output), "scoring")
    client.set_tag(scored.scoring_run_id, "scoring_outcome", SCORED)


# --- The folder the scheduled deployment scans -----------------------------------------------


def unscored_files(client: MlflowClient, settings: Settings) -> list[Path]:
    """The folder's CSV and Parquet inputs (not scoring's own outputs, not hidden files) whose
    content no finished scoring run has scored yet."""
    folder = scoring_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    done = scored_checksums(client, settings)
    found = []
    for path in sorted(folder.iterdir()):
        if (
            path.is_file()
            and path.suffix.lower() in {".csv", ".parquet"}
            and not path.name.startswith(".")
            and not path.name.endswith(OUTPUTS)
            and hashlib.sha256(path.read_bytes()).hexdigest() not in done
        ):
            found.append(path)
    return found


def scored_checksums(client: MlflowClient, settings: Settings) -> set[str]:
    """The input checksums of every scoring run that decided its file: scored, or refused (a
    refused content is not taken again; the same name with new content is)."""
    experiment = client.get_experiment_by_name(experiment_name(settings)).experiment_id
    runs = client.search_runs(
        [experiment],
        filter_string="tags.scoring_outcome IS NOT NULL",  # only decided runs carry it
        max_results=50_000,
    )
    return {run.data.tags["input_checksum"] for run in runs}


def _now() -> str:
    return datetime.now(UTC).isoformat()
