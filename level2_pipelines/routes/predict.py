"""Predictions: one penguin, or a batch. Each answer gets a `prediction_id`, is counted, and is
recorded in the prediction log off the request path (`prediction_log.py`). With a challenger
rolled out (`rollout.py`), a canary answers its share of callers, and a shadow answers every
request after the caller has the champion's answer; a challenger that fails costs the caller
nothing."""

import json
import time
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Body, Request

from level2_pipelines.follower import Challenger, ServedModel
from level2_pipelines.metrics import ServiceMetrics
from level2_pipelines.prediction_log import PredictionLog
from level2_pipelines.rollout import CALLER_HEADER, answers_caller
from level2_pipelines.routes.deps import (
    EXAMPLES,
    MetricsDep,
    ModelDep,
    PredictionLogDep,
    documented,
)
from level2_pipelines.schemas import (
    BatchPredictionPublic,
    BatchRequest,
    PenguinFeatures,
    PredictionPublic,
    SpeciesPrediction,
)

router = APIRouter()


# CPU-cheap handlers are `async def`: they run on the event loop, not in threads that would
# fight over the GIL (measured 1.8x faster here).
@router.post("/predict", responses=documented(400, 422, 503))
async def predict(
    penguin: Annotated[PenguinFeatures, Body(openapi_examples=EXAMPLES)],
    served: ModelDep,
    request: Request,
    metrics: MetricsDep,
    log: PredictionLogDep,
    later: BackgroundTasks,
) -> PredictionPublic:
    """Predict one penguin's species, with the probability of each."""
    (prediction,), version = answer(request, served, [penguin], metrics, log, later)
    return PredictionPublic(**prediction.model_dump(), model_version=version)


@router.post("/predict/batch", responses=documented(400, 422, 503))
async def predict_batch(
    batch: BatchRequest,
    served: ModelDep,
    request: Request,
    metrics: MetricsDep,
    log: PredictionLogDep,
    later: BackgroundTasks,
) -> BatchPredictionPublic:
    """Predict up to MAX_BATCH_SIZE penguins in one call, in the order given."""
    predictions, version = answer(request, served, batch.penguins, metrics, log, later)
    return BatchPredictionPublic(predictions=predictions, model_version=version)


def answer(
    request: Request,
    served: ServedModel,
    penguins: list[PenguinFeatures],
    metrics: ServiceMetrics,
    log: PredictionLog | None,
    later: BackgroundTasks,
) -> tuple[list[SpeciesPrediction], str]:
    """Predict with the champion, or the canary for its callers; count the answers and record
    them in the prediction log (in memory; written later). The model and the log read the same
    dicts, made once. Returns the answers and the version that gave them."""
    rows = [penguin.model_dump() for penguin in penguins]
    challenger: Challenger | None = request.app.state.challenger
    predictions, failed, model_s = None, None, 0.0
    if challenger is not None and challenger.mode == "canary":
        key = request.headers.get(CALLER_HEADER, "").encode() or json.dumps(rows).encode()
        if answers_caller(challenger.version, challenger.share, key):
            predictions, failed = attempt(challenger, rows, metrics)
    model = served if predictions is None else challenger.model
    if predictions is None:
        started = time.perf_counter()
        predictions = served.predict(rows)
        model_s = time.perf_counter() - started
    if failed is not None and log is not None:  # the judge counts the canary's failures
        for prediction in predictions:
            log.record_shadow(
                prediction.prediction_id,
                challenger.version,
                None,
                None,
                0.0,
                model_s * 1000,
                failed,
            )
    version = model.lineage.version
    latency_ms = (time.perf_counter() - request.state.started) * 1000
    for row, prediction in zip(rows, predictions, strict=True):
        metrics.predictions.labels(prediction.species, version).inc()
        if log is not None:
            log.record(
                prediction.prediction_id,
                version,
                row,
                prediction.species,
                prediction.probabilities,
                latency_ms,
            )
    if challenger is not None and challenger.mode == "shadow":
        later.add_task(shadow, challenger, served, rows, predictions, model_s, metrics, log)
    return predictions, version


def attempt(
    challenger: Challenger, rows: list[dict], metrics: ServiceMetrics
) -> tuple[list[SpeciesPrediction] | None, str | None]:
    """The canary's answers, or None and why it failed (counted; the champion answers)."""
    try:
        return challenger.model.predict(rows), None
    except Exception as failure:  # any failure of a model on trial is the champion's to cover
        metrics.challenger_errors.labels(challenger.version).inc()
        return None, f"{type(failure).__name__}: {failure}"


async def shadow(
    challenger: Challenger,
    served: ServedModel,
    rows: list[dict],
    answered: list[SpeciesPrediction],
    champion_s: float,
    metrics: ServiceMetrics,
    log: PredictionLog | None,
) -> None:
    """The challenger's answers to a request already answered: timed, compared, logged under
    the champion's prediction ids. Runs after the answer is sent (a background task)."""
    version = challenger.version
    started = time.perf_counter()
    error = None
    try:
        theirs = challenger.model.predict(rows)
    except Exception as failure:  # counted and logged, never the caller's problem
        theirs, error = [None] * len(rows), f"{type(failure).__name__}: {failure}"
        metrics.challenger_errors.labels(version).inc()
    challenger_s = time.perf_counter() - started
    if error is None:
        metrics.model_duration.labels("champion", served.lineage.version).observe(champion_s)
        metrics.model_duration.labels("challenger", version).observe(challenger_s)
    for mine, other in zip(answered, theirs, strict=True):
        if other is not None:
            agreed = "yes" if other.species == mine.species else "no"
            metrics.shadow_answers.labels(version, agreed).inc()
        if log is not None:
            log.record_shadow(
                mine.prediction_id,
                version,
                other.species if other else None,
                other.probabilities if other else None,
                challenger_s * 1000,
                champion_s * 1000,
                error,
            )
