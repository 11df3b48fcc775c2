"""Register, promote, approve and roll back, with MLflow registry aliases (not stages).

`champion` is the version the service serves; `challenger` waits for a person's approval when
approval is manual. Each version records the champion it was judged against, and each promoted
version the champion it replaced, so a rollback is one alias move and repeated rollbacks walk
the real history. Moving an alias is a single registry write: a crash before it leaves the
champion as it was.

One decision at a time: a training run holds `decision()` from its duplicate check to its
promotion, and so do rollback and approve; for a team it is a PostgreSQL advisory lock, held
across hosts and containers (`locks.py`). Promotion also checks that `champion` is still the
version the candidate was judged against. The registry has no compare-and-set of its own, so
that check and the alias move are two calls: only the lock makes them one step.

    python -m level2_pipelines.registry show | rollback | approve
"""

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from level2_pipelines import locks
from level2_pipelines.model import ModelLoadError, load_version
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect

CHAMPION, CHALLENGER = "champion", "challenger"


class RegistryError(RuntimeError):
    """A registry action that cannot be done, or a registry that cannot be read, and why."""


class RegistryUnavailable(RegistryError):
    """The registry or its store cannot be read or written: not an answer about the models."""


class StaleChampion(RegistryError):
    """The champion moved after the candidate was judged: promoting it would skip a decision."""


@contextmanager
def decision(settings: Settings, name: str = "decision") -> Iterator[None]:
    """Hold the one lock under which runs, rollbacks and approvals change aliases (`name`:
    another lock, for another read-then-write). Across hosts when a PostgreSQL database is
    configured (`locks.py`); a wait past `decision_wait_s` is a RegistryError naming the
    holder, a lock database that cannot be reached RegistryUnavailable."""
    uri = settings.resolved_lock_uri
    file = settings.decision_lock.with_name(f"{name}.lock")
    try:
        with locks.one_at_a_time(
            uri, file, f"{name} {settings.model_name}", settings.decision_wait_s
        ):
            yield
    except locks.LockTimeout as error:
        raise RegistryError(str(error)) from None
    except locks.LockUnavailable as error:
        raise RegistryUnavailable(str(error)) from None


def _absent(error: MlflowException) -> bool:
    """No such model, or no such alias on it: MLflow's two ways of saying "none yet"."""
    return error.error_code == "RESOURCE_DOES_NOT_EXIST" or (
        error.error_code == "INVALID_PARAMETER_VALUE" and "not found" in error.message
    )


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version `alias` points at; None only when there is none. A registry that cannot be
    read is a RegistryError, never "no champion"."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if _absent(error):
            return None
        raise RegistryUnavailable(f"cannot read {name}@{alias}: {error.message}") from None
    except Exception as error:  # the store itself: a locked or missing database, a down server
        raise RegistryUnavailable(
            f"cannot read {name}@{alias} ({type(error).__name__}: {error})"
        ) from None


def trained_on(client: MlflowClient, name: str, batch_checksum: str) -> ModelVersion | None:
    """The earliest version of `name` trained on a batch with this content and decided, if any:
    the pipeline tags a version's `batch_checksum` as its decision's last write, so a version
    whose run was cut short (a lost tracking server, a killed worker) does not count."""
    try:
        found = client.search_model_versions(
            f"name = '{name}' and tags.batch_checksum = '{batch_checksum}'"
        )
    except Exception as error:
        raise RegistryUnavailable(f"cannot search {name}'s versions: {error}") from None
    return min(found, key=lambda v: int(v.version), default=None)


def register(
    client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> str:
    """A new registry version of `name` for the model at `model_uri`, tagged with its lineage."""
    # MLflow 3 names a logged model `models:/<model_id>`; a tracking server refuses that source
    # unless the version names the same model (the embedded store does not check).
    rest = model_uri.removeprefix("models:/")
    model_id = rest if rest != model_uri and "/" not in rest and "@" not in rest else None

    def create() -> str:
        version = client.create_model_version(
            name, model_uri, run_id=run_id, tags=tags, model_id=model_id
        )
        return str(version.version)

    # The registered model exists on every run but the first: no read to check for it first.
    try:
        return create()
    except MlflowException as error:
        if not _absent(error):
            raise
    client.create_registered_model(name, description="Penguin species, level 2 pipeline")
    return create()


def promote(
    client: MlflowClient, name: str, version: str, alias: str, judged_against: str | None
) -> str | None:
    """Point `alias` at `version`, which was judged against champion `judged_against` (None:
    there was none). `champion` moves only if it is still that version (StaleChampion
    otherwise), records it as `previous_champion`, and clears a waiting challenger, which was
    judged against the champion being replaced. Returns the champion before. A read, then
    writes: call it inside `decision()`, which no other promotion can enter meanwhile."""
    found = version_by_alias(client, name, CHAMPION)
    current = str(found.version) if found is not None else None
    if current != judged_against:
        raise StaleChampion(
            f"the champion moved from {_v(judged_against)} to {_v(current)} after v{version} was "
            f"judged; v{version} is not promoted (rerun the batch with --force to judge it again)"
        )
    if alias == CHAMPION:
        if current is not None and current != version:
            client.set_model_version_tag(name, version, "previous_champion", current)
        client.set_model_version_tag(name, version, "champion_since", _now())
        client.set_registered_model_alias(name, CHAMPION, version)  # the step that changes serving
        if version_by_alias(client, name, CHALLENGER) is not None:
            client.delete_registered_model_alias(name, CHALLENGER)
    else:
        client.set_model_version_tag(name, version, f"{alias}_since", _now())
        client.set_registered_model_alias(name, alias, version)
    return current


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Move `champion` back to the version it replaced, once that version is shown to load
    safely (a rollback must not put a model that cannot be served in service); (from, to)."""
    current = version_by_alias(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    version, previous = str(current.version), current.tags.get("previous_champion")
    if previous is None:
        raise RegistryError(f"{name} v{version} replaced no earlier champion")
    try:
        load_version(client, name, previous)
    except ModelLoadError as error:
        raise RegistryError(f"cannot roll back to v{previous}: {error}") from None
    client.set_model_version_tag(name, version, "rolled_back_at", _now())
    client.set_registered_model_alias(name, CHAMPION, previous)
    return version, previous


def approve(client: MlflowClient, name: str) -> str:
    """Promote the waiting `challenger` to champion; return its version. A challenger judged
    against another champion than today's is refused: its verdict no longer holds."""
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"{name} has no challenger waiting for approval")
    version = str(challenger.version)
    judged = challenger.tags.get("judged_against", "none")
    try:
        promote(client, name, version, CHAMPION, None if judged == "none" else judged)
    except StaleChampion as error:
        raise RegistryError(f"challenger v{version}: {error}") from None
    client.set_model_version_tag(name, version, "approved_at", _now())
    return version


def _v(version: str | None) -> str:
    return f"v{version}" if version is not None else "no champion"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def describe(client: MlflowClient, name: str) -> list[str]:
    """One line per version, newest first, with its aliases and gate outcome."""
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        return [f"{name}: no versions yet; run `make level2`"]
    aliases = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    lines = []
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True):
        marks = ",".join(aliases.get(str(v.version), [])) or "-"
        lines.append(
            f"v{v.version:<4} {marks:<20} gate={v.tags.get('gate', '?'):<9} "
            f"batch={v.tags.get('batch_id', '?')} run={v.run_id[:8]}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="Show the registry, roll back, or approve.")
    parser.add_argument("action", choices=["show", "rollback", "approve"])
    args = parser.parse_args()
    # Here, not at the top: the deploy stage smoke-tests through the service, which reads
    # the registry.
    from level2_pipelines.deploy import follow_in_service

    settings = Settings()
    client = connect(settings)
    try:
        if args.action == "rollback":
            with decision(settings):
                old, new = rollback(client, settings.model_name)
            print(f"level 2 rollback: champion moved from v{old} back to v{new}")
            print(follow_in_service(settings, new))
        elif args.action == "approve":
            with decision(settings):
                version = approve(client, settings.model_name)
            print(f"level 2 approve: v{version} is now champion")
            print(follow_in_service(settings, version))
        print("\n".join(describe(client, settings.model_name)))
    except (RegistryError, MlflowException) as error:
        sys.exit(f"level 2 {args.action}: {error}")


if __name__ == "__main__":
    main()
