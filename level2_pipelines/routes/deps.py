"""What the routes share, as typed dependencies read from the app's state (`api.create_app`
puts it there), and the OpenAPI documentation of their error answers.

Every dependency is `async def`: a plain `def` one would hop to the thread pool on every
request."""

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from level2_pipelines.follower import ChampionFollower, ServedModel
from level2_pipelines.metrics import ServiceMetrics
from level2_pipelines.prediction_log import PredictionLog
from level2_pipelines.schemas import ErrorPublic
from level2_pipelines.settings import Settings
from shared.contract import VALID_EXAMPLES


async def get_model(request: Request) -> ServedModel:
    model = getattr(request.app.state, "model", None)
    if model is None:
        follower = getattr(request.app.state, "follower", None)
        problem = follower.problem if follower is not None else None
        raise HTTPException(
            status_code=503, detail=problem or "model: no champion yet; run `make level2`"
        )
    return model


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def get_prediction_log(request: Request) -> PredictionLog | None:
    """The prediction log the answers are recorded in; None when this service keeps none."""
    return request.app.state.prediction_log


async def get_follower(request: Request) -> ChampionFollower | None:
    """What keeps the served model on the champion; None for a service of one fixed model."""
    return getattr(request.app.state, "follower", None)


bearer = HTTPBearer(auto_error=False)


async def require_admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The configured token, or the random one `serve` keeps in the state folder; None in the
    app's state: the admin endpoints are off (an app made in-process, such as the smoke test)."""
    expected: str | None = request.app.state.admin_token
    if expected is None:
        raise HTTPException(
            status_code=403,
            detail="authorization: admin is off: no token configured; set LEVEL2_ADMIN_TOKEN "
            "or start the service with `make level2-serve`, which makes one",
        )
    given = (credentials.credentials if credentials else "").encode()
    if not secrets.compare_digest(given, expected.encode()):
        raise HTTPException(
            status_code=401,
            detail="authorization: a valid admin bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )


ModelDep = Annotated[ServedModel, Depends(get_model)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
PredictionLogDep = Annotated[PredictionLog | None, Depends(get_prediction_log)]
FollowerDep = Annotated[ChampionFollower | None, Depends(get_follower)]
AdminDep = Annotated[None, Depends(require_admin)]

EXAMPLES = {
    name: {"summary": name.replace("_", " "), "value": example}
    for name, example in VALID_EXAMPLES.items()
}
WHY = {
    400: "The body could not be read (not UTF-8 JSON text)",
    401: "No admin bearer token, or the wrong one",
    403: "Admin is off: this service has no token",
    404: "No such prediction was served here; the message names the field",
    409: "The registry refuses the action, or this service keeps no prediction log; the "
    "message says why",
    413: "The body is larger than the service accepts",
    422: "Invalid input; the message names the field",
    503: "No model to serve, or the registry or the prediction log cannot be read; the "
    "message says which",
}


def documented(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI `responses` for these error statuses, all in the ErrorPublic shape."""
    return {status: {"model": ErrorPublic, "description": WHY[status]} for status in statuses}
