"""The level 2 service: the contract's endpoints over the registry's `champion`, watched.

It follows the champion without a restart (`follower.py`): a new version is loaded completely,
off the event loop, and only then swapped in, so no request fails or sees a half-loaded model
during a swap. Bad input is a 4xx whose message names the field, never a 5xx (`errors.py`).

The endpoints come from routers by subject (`routes/`): predictions, feedback, admin, and
health, model and metrics. Every answer gets a `prediction_id` and is recorded in the
prediction log off the request path (`prediction_log.py`); `POST /feedback` brings the true
species back to it, and `GET /metrics` shows requests, latencies, predictions, the served
version and readiness, live accuracy and the drift monitor's latest statistics (`metrics.py`).

It listens whether or not its dependencies answer: it waits for its first champion at most
`startup_wait_s` (every MLflow call is bounded, `tracking.py`), then serves what it has, says
on `/ready` what it waits for, and picks the champion up once MLflow is back. The prediction
log's database may be away too: answers wait in memory until it is back.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from level2_pipelines import prediction_log
from level2_pipelines.errors import BodySizeLimit, http_error_handler, validation_error_handler
from level2_pipelines.follower import ChampionFollower, ServedModel
from level2_pipelines.metrics import ServiceMetrics, StartedAt
from level2_pipelines.routes import admin, card, feedback, health, predict
from level2_pipelines.routes.deps import documented
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import point_at_store


def create_app(
    settings: Settings | None = None,
    model: ServedModel | None = None,
    *,
    record: bool | None = None,
) -> FastAPI:
    """The service. With `model`, it serves that one model and does not follow the registry
    (the pipeline's smoke test uses this); otherwise it follows the champion. It records its
    answers in the prediction log if the settings say so and `record` (default: when it
    follows the champion; a smoke test's answers must not reach the monitor)."""
    settings = settings or Settings()
    record = model is None if record is None else record
    metrics = ServiceMetrics(settings)
    metrics.show_served(model.lineage if model else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.callback(metrics.close)  # last out: this worker serves nothing any more
            if record and settings.prediction_log:
                log = await asyncio.to_thread(open_log, settings)
                app.state.prediction_log = log
                # Last out: what is still pending is written after the last request.
                stack.push_async_callback(asyncio.to_thread, log.engine.dispose)
                stack.push_async_callback(asyncio.to_thread, last_flush, log)
                stack.push_async_callback(
                    stop, asyncio.create_task(keep_books(log, settings, metrics))
                )
            if model is None:
                follower = ChampionFollower(
                    app,
                    point_at_store(settings),
                    settings.model_name,
                    settings.poll_seconds,
                    store=settings.resolved_tracking_uri,
                )
                app.state.follower = follower
                # Stay up even if nothing can be served yet (/ready is 503 and says why) and
                # keep following: a fixed champion, a rollback or MLflow coming back is picked
                # up without a restart. The first champion is waited for, briefly: a service
                # that answers at once answers 503 until it has one.
                stack.push_async_callback(stop, asyncio.create_task(follower.follow()))
                with suppress(TimeoutError):
                    await asyncio.wait_for(follower.tried.wait(), settings.startup_wait_s)
            yield

    app = FastAPI(
        title="Penguin species service (level 2)",
        description="Predicts a penguin's species from its measurements with the registry's "
        "champion, followed without restarts; `GET /model` shows its lineage.",
        version="2",
        lifespan=lifespan,
        # The body limit guards every path, whatever its method, so every path documents it.
        responses=documented(413),
    )
    # What the routes' dependencies read (`routes/deps.py`).
    app.state.settings = settings
    app.state.model = model
    app.state.challenger = None  # a version rolled out beside it (`rollout.py`), if any
    app.state.metrics = metrics
    app.state.prediction_log = None
    # The configured token, or the random one `serve` keeps in the state folder. None: the
    # admin endpoints are off (an app made in-process, such as the pipeline's smoke test).
    app.state.admin_token = settings.admin_token_value()
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    metrics.instrument(app)  # outside the body limit: it counts the 413s too
    app.add_middleware(StartedAt)  # outermost: a request's time starts before it is counted
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    for router in (predict.router, feedback.router, health.router, admin.router, card.router):
        app.include_router(router)
    return app


async def keep_books(log: prediction_log.PredictionLog, settings: Settings, metrics) -> None:
    """Write recorded answers every `flush_every_s`; refresh the gauges read from the log and
    from the drift monitor's verdict (on the tracking server) every `metrics_every_s`."""
    refreshed = 0.0
    while True:
        await asyncio.sleep(settings.flush_every_s)
        # Before and after: a flush waiting on the database does not hide what piles up.
        metrics.log_pending.set(log.pending)
        metrics.log_dropped.set(log.dropped)
        await asyncio.to_thread(log.flush)
        metrics.log_pending.set(log.pending)
        metrics.log_dropped.set(log.dropped)
        if time.monotonic() - refreshed >= settings.metrics_every_s:
            refreshed = time.monotonic()
            since = time.time() - settings.live_accuracy_window_s
            with suppress(SQLAlchemyError):  # shown again next time
                rows = await asyncio.to_thread(
                    prediction_log.live_accuracy, log.engine, since=since
                )
                metrics.show_live_accuracy(rows)
                rows = await asyncio.to_thread(
                    prediction_log.live_accuracy,
                    log.engine,
                    since=since,
                    table=prediction_log.shadow_answers,
                )
                metrics.show_shadow_accuracy(rows)
            await asyncio.to_thread(metrics.show_drift, settings)  # bounded, off the loop


def app_from_env() -> FastAPI:
    """The service following the champion, with settings from the environment: what
    `serve` has uvicorn start in each worker process."""
    return create_app(Settings())


def open_log(settings: Settings) -> prediction_log.PredictionLog:
    """The log, its tables made if its database answers now (within its timeout); if it does
    not, the first flush that reaches it makes them."""
    engine = prediction_log.make_engine(
        settings.resolved_prediction_log_uri, settings.prediction_log_timeout_s
    )
    log = prediction_log.PredictionLog(engine, max_pending=settings.prediction_log_max_pending)
    with suppress(SQLAlchemyError):
        log.make_tables()
    return log


def last_flush(log: prediction_log.PredictionLog) -> None:
    """Write what is pending as the service stops; what the database cannot take now is lost
    with the process, and said so."""
    log.flush()
    if log.pending:
        logging.getLogger("uvicorn.error").error(
            "prediction log: %d answers could not be written before the service stopped "
            "(%s); they are lost",
            log.pending,
            log.problem,
        )


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task
