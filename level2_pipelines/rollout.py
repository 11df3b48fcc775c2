"""Safe rollout: a new version earns `champion` on live evidence instead of on held-out birds
alone (Microsoft's levels 3-4, Google's level 2: shadow traffic, canary).

The switch is the registry's, so every replica and every worker sees the same one: a version
under the `challenger` alias, tagged `rollout=shadow` or `rollout=canary` (and `canary_share`),
is served beside the champion by every service that follows the registry (`follower.py`):

- shadow: the challenger answers every request too, after the caller has the champion's answer;
  its answers are logged under the request's `prediction_id` (`shadow_answers`), never returned;
- canary: a share of callers (sticky: the same `X-Caller-Id` header, or the same request, goes
  to the same model) is answered by the challenger, each answer naming its version.

Either way, a challenger that fails to answer costs the caller nothing (the champion answers)
and is logged as a failed attempt. The judge (`make level2-judge`, or the `penguins-rollout`
deployment every minute) reads the prediction log and the feedback and decides, under the
registry's decision lock: promote (enough confirmed birds, accuracy not worse than the
champion's beyond a tolerance, no error or latency regression), withdraw (worse: the reason is
tagged on the version and logged), or wait. A waiting challenger with no `rollout` tag is one
waiting for a person (`--approval manual`): it is not served.

    python -m level2_pipelines.rollout start shadow|canary [--share S] [--version N]
    python -m level2_pipelines.rollout judge | withdraw --reason TEXT | show
"""

import argparse
import hashlib
import sys
from dataclasses import dataclass
from typing import Literal

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from level2_pipelines import registry
from level2_pipelines.settings import Settings
from level2_pipelines.tracking import connect

Mode = Literal["shadow", "canary"]
MODES: tuple[Mode, ...] = ("shadow", "canary")
CALLER_HEADER = "x-caller-id"  # a caller's own id keeps it on one model across requests


@dataclass(frozen=True)
class Switch:
    """What the registry says the challenger does."""

    version: str
    mode: Mode
    share: float  # canary: the share of callers it answers; shadow: 1 (it sees every request)


def check_share(share: float) -> float:
    if not 0 <= share <= 1:
        raise registry.RegistryError(f"canary_share: {share} is outside 0-1")
    return share


def switch_of(client: MlflowClient, name: str) -> Switch | None:
    """The challenger being rolled out, if any (a challenger waiting for a person is not)."""
    found = registry.version_by_alias(client, name, registry.CHALLENGER)
    if found is None or found.tags.get("rollout") not in MODES:
        return None
    mode = found.tags["rollout"]
    try:
        share = check_share(float(found.tags.get("canary_share", "1")))
    except ValueError:
        share = 0.0  # a tag a person mistyped: the challenger answers no one
    return Switch(str(found.version), mode, share if mode == "canary" else 1.0)


def start(
    client: MlflowClient,
    name: str,
    version: str,
    mode: Mode,
    share: float,
    judged_against: str | None,
) -> None:
    """Roll `version` out as challenger in `mode`. Tags first, alias last: the alias is the
    switch, and a service that sees it finds the tags it needs. Call inside `decision()`."""
    if mode not in MODES:
        raise registry.RegistryError(f"rollout: {mode!r} is not one of {', '.join(MODES)}")
    check_share(share)
    client.set_model_version_tag(name, version, "rollout", mode)
    client.set_model_version_tag(name, version, "canary_share", str(share))
    if "rollout_verdict" in client.get_model_version(name, version).tags:  # a second try
        client.delete_model_version_tag(name, version, "rollout_verdict")
    registry.promote(client, name, version, registry.CHALLENGER, judged_against)


def withdraw(client: MlflowClient, name: str, reason: str) -> str:
    """Take the challenger out of service (every replica stops within a poll); the reason
    stays on the version. Returns its version. Call inside `decision()`."""
    found = registry.version_by_alias(client, name, registry.CHALLENGER)
    if found is None:
        raise registry.RegistryError(f"{name} has no challenger to withdraw")
    version = str(found.version)
    client.set_model_version_tag(name, version, "rollout_verdict", "withdrawn")
    client.set_model_version_tag(name, version, "rollout_reason", reason)
    client.delete_registered_model_alias(name, registry.CHALLENGER)
    return version


def answers_caller(switch_version: str, share: float, key: bytes) -> bool:
    """Whether the canary answers this caller: a hash of the caller (and of the version, so
    the next canary draws its own callers) under `share`. The same caller, the same model."""
    digest = hashlib.sha256(switch_version.encode() + b"\0" + key).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def main() -> None:
    parser = argparse.ArgumentParser(description="Roll a version out, judge it, withdraw it.")
    actions = parser.add_subparsers(dest="action", required=True)
    begin = actions.add_parser("start", help="serve a version as challenger beside the champion")
    begin.add_argument("mode", choices=MODES)
    begin.add_argument("--share", type=float, help="canary: share of callers (default: settings)")
    begin.add_argument("--version", help="default: the newest version that passed the gate")
    actions.add_parser("judge", help="promote, withdraw or wait, on live evidence")
    stop = actions.add_parser("withdraw", help="take the challenger out of service")
    stop.add_argument("--reason", required=True)
    actions.add_parser("show", help="the champion, the challenger and the evidence so far")
    args = parser.parse_args()

    from level2_pipelines import judge  # the prediction log's reader, only where it is needed

    settings = Settings()
    client = connect(settings)
    name = settings.model_name
    try:
        if args.action == "start":
            share = settings.canary_share if args.share is None else args.share
            version = args.version or newest_passed(client, name)
            with registry.decision(settings):
                champion = registry.version_by_alias(client, name, registry.CHAMPION)
                against = str(champion.version) if champion is not None else None
                if version == against:
                    raise registry.RegistryError(f"v{version} is the champion already")
                start(client, name, version, args.mode, share, against)
            what = f"{share:.0%} of callers" if args.mode == "canary" else "every request, unseen"
            print(f"level 2 rollout: v{version} is challenger ({args.mode}: {what})")
        elif args.action == "withdraw":
            with registry.decision(settings):
                version = withdraw(client, name, args.reason)
            print(f"level 2 rollout: v{version} withdrawn ({args.reason})")
        elif args.action == "judge":
            print(judge.judge(settings).line())
        else:
            print(judge.show(settings))
    except (registry.RegistryError, MlflowException) as error:
        sys.exit(f"level 2 rollout {args.action}: {error}")


def newest_passed(client: MlflowClient, name: str) -> str:
    found = client.search_model_versions(f"name = '{name}' and tags.gate = 'passed'")
    if not found:
        raise registry.RegistryError(f"{name} has no version that passed the gate")
    return str(max(int(v.version) for v in found))


if __name__ == "__main__":
    main()
