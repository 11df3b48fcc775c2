"""Feedback: the true species of a bird the service answered for, confirmed later. The drift
monitor computes live accuracy from it, and a retraining learns from these rows."""

import asyncio

from fastapi import APIRouter, HTTPException
from sqlalchemy.exc import SQLAlchemyError

from level2_pipelines import prediction_log
from level2_pipelines.routes.deps import AdminDep, PredictionLogDep, documented
from level2_pipelines.schemas import FeedbackPublic, FeedbackRequest

router = APIRouter()


@router.post("/feedback", responses=documented(400, 401, 403, 404, 409, 422, 503))
async def give_feedback(
    body: FeedbackRequest, _: AdminDep, log: PredictionLogDep
) -> FeedbackPublic:
    """The true species of a bird this service answered for, confirmed later; the drift
    monitor computes live accuracy from it, and a retraining learns from these rows. It
    changes what the next model learns, so it takes the admin token."""
    if log is None:
        raise HTTPException(
            status_code=409, detail="prediction_id: this service keeps no prediction log"
        )
    try:
        known = await asyncio.to_thread(log.knows, body.prediction_id)
        if not known:
            raise HTTPException(
                status_code=404,
                detail=f"prediction_id: {body.prediction_id} is not an answer of this service",
            )
        kept = await asyncio.to_thread(
            prediction_log.add_feedback, log.engine, body.prediction_id, body.species
        )
    except SQLAlchemyError as error:
        log_error = str(error).splitlines()[0][:200]
        raise HTTPException(
            status_code=503, detail=f"prediction log: cannot be read ({log_error})"
        ) from None
    return FeedbackPublic(
        prediction_id=kept.prediction_id, species=kept.species, replaced=kept.previous
    )
