"""Register, promote, approve and roll back, with MLflow registry aliases (not stages).

`champion` is the version the service serves; `challenger` waits for a person's approval when
approval is manual. Each promoted version is tagged with the champion it replaced, so a
rollback is one alias move. Moving an alias is a single registry write: a crash before it leaves
the champion as it was.

    python -m level2_pipelines.registry show | rollback | approve
"""

import argparse
import sys
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from level2_pipelines.deploy import follow_in_service
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect

CHAMPION, CHALLENGER = "champion", "challenger"


class RegistryError(RuntimeError):
    """A registry action that cannot be done, and why."""


def version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:  # no such model, or no such alias yet
        return None


def register(
    client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> str:
    """A new registry version of `name` for the model at `model_uri`, tagged with its lineage."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Penguin species, level 2 pipeline")
    return str(client.create_model_version(name, model_uri, run_id=run_id, tags=tags).version)


def promote(client: MlflowClient, name: str, version: str, alias: str = CHAMPION) -> str | None:
    """Point `alias` at `version`; return the version it pointed at before (if any)."""
    found = version_by_alias(client, name, CHAMPION)
    previous = str(found.version) if found is not None else None
    if alias == CHAMPION and previous is not None and previous != version:
        client.set_model_version_tag(name, version, "previous_champion", previous)
    client.set_model_version_tag(name, version, f"{alias}_since", _now())
    client.set_registered_model_alias(name, alias, version)  # the one step that changes serving
    return previous


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Move `champion` back to the version it replaced; return (from, to)."""
    current = version_by_alias(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    version, previous = str(current.version), current.tags.get("previous_champion")
    if previous is None:
        raise RegistryError(f"{name} v{version} replaced no earlier champion")
    client.set_model_version_tag(name, version, "rolled_back_at", _now())
    client.set_registered_model_alias(name, CHAMPION, previous)
    return version, previous


def approve(client: MlflowClient, name: str) -> str:
    """Promote the waiting `challenger` to champion; return its version."""
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"{name} has no challenger waiting for approval")
    version = str(challenger.version)
    promote(client, name, version)
    client.delete_registered_model_alias(name, CHALLENGER)
    client.set_model_version_tag(name, version, "approved_at", _now())
    return version


def _now() -> str:
    return datetime.now(UTC).isoformat()


def describe(client: MlflowClient, name: str) -> list[str]:
    """One line per version, newest first, with its aliases and gate outcome."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        versions = []
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
    settings = Settings()
    client = connect(settings)
    try:
        if args.action == "rollback":
            old, new = rollback(client, settings.model_name)
            print(f"level 2 rollback: champion moved from v{old} back to v{new}")
            print(follow_in_service(settings, new))
        elif args.action == "approve":
            version = approve(client, settings.model_name)
            print(f"level 2 approve: v{version} is now champion")
            print(follow_in_service(settings, version))
    except RegistryError as error:
        sys.exit(f"level 2 {args.action}: {error}")
    print("\n".join(describe(client, settings.model_name)))


if __name__ == "__main__":
    main()
