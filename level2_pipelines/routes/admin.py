"""Admin: reload the champion now, or roll it back. Both take the admin token."""

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, HTTPException
from mlflow.exceptions import MlflowException

from level2_pipelines import registry
from level2_pipelines.follower import ChampionFollower, ServedModel
from level2_pipelines.model import ModelLoadError
from level2_pipelines.routes.deps import AdminDep, FollowerDep, SettingsDep, documented
from level2_pipelines.schemas import AdminActionPublic

router = APIRouter(prefix="/admin")


@router.post("/reload", responses=documented(401, 403, 409, 503))
async def reload(_: AdminDep, follower: FollowerDep) -> AdminActionPublic:
    """Ask the registry who is champion (and challenger) now, and serve them."""
    served = await _refresh(_following(follower))
    version = served.lineage.version if served else None
    return AdminActionPublic(action="reload", model_version=version, detail="serving champion")


@router.post("/rollback", responses=documented(401, 403, 409, 503))
async def rollback(_: AdminDep, follower: FollowerDep, settings: SettingsDep) -> AdminActionPublic:
    """Move `champion` back to the version it replaced, and serve that."""
    follower = _following(follower)

    def move_back() -> tuple[str, str]:
        with registry.decision(settings):  # not while a run decides or promotes
            return registry.rollback(follower.client, settings.model_name)

    with registry_errors():
        old, new = await asyncio.to_thread(move_back)
    served = await _refresh(follower)
    return AdminActionPublic(
        action="rollback",
        model_version=served.lineage.version if served else None,
        detail=f"champion moved from v{old} back to v{new}",
    )


def _following(follower: ChampionFollower | None) -> ChampionFollower:
    if follower is None:
        raise HTTPException(status_code=409, detail="registry: this service serves a fixed model")
    return follower


async def _refresh(follower: ChampionFollower) -> ServedModel | None:
    with registry_errors():
        served = await follower.refresh(now=True)
    await follower.refresh_challenger()  # a challenger's trouble is logged, never the caller's
    return served


@contextmanager
def registry_errors() -> Iterator[None]:
    """A registry that cannot be read is 503; an action it refuses, or a champion that cannot
    be loaded, is 409; both name the cause."""
    try:
        yield
    except (registry.RegistryUnavailable, MlflowException) as error:
        raise HTTPException(status_code=503, detail=f"registry: {error}") from None
    except (registry.RegistryError, ModelLoadError) as error:
        raise HTTPException(status_code=409, detail=f"champion: {error}") from None
