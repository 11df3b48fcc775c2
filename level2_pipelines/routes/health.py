"""What the service is and how it does: metrics for Prometheus, liveness, readiness, and the
served model's lineage."""

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from level2_pipelines.routes.deps import (
    FollowerDep,
    MetricsDep,
    ModelDep,
    PredictionLogDep,
    documented,
)
from level2_pipelines.schemas import HealthPublic, LineagePublic, ReadyPublic

router = APIRouter()


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def prometheus_metrics(metrics: MetricsDep) -> PlainTextResponse:
    """Prometheus text format: the standard HTTP series (`http_requests_total`,
    `http_request_duration_seconds` by method, route and status), predictions by species and
    model version, the served version, readiness, live accuracy and the drift monitor's
    latest statistics."""
    return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health")
async def health() -> HealthPublic:
    """Liveness: the process answers."""
    return HealthPublic(status="ok")


@router.get("/ready", responses=documented(503))
async def ready(served: ModelDep, follower: FollowerDep, log: PredictionLogDep) -> ReadyPublic:
    """Readiness: a model is loaded and served; `problem` names, while this one serves, a
    newer champion that could not be loaded, a registry or tracking server that cannot be
    reached, or a prediction log whose database is away (answers wait in memory)."""
    problems = [
        follower.problem if follower is not None else None,
        log.problem if log is not None else None,
    ]
    return ReadyPublic(
        status="ready",
        model_version=served.lineage.version,
        problem="; ".join(p for p in problems if p) or None,
    )


@router.get("/model", responses=documented(503))
async def model_lineage(served: ModelDep) -> LineagePublic:
    """The served model's registry version and lineage (run, commit, data, batch, flow run)
    and the path its predictions take: `numpy` for the recipe, `pipeline` for any other
    estimator."""
    return LineagePublic(**vars(served.lineage), serving_path=served.predictor.path)
