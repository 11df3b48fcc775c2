"""What more than one scenario observes the same way: requests to a service, the version it
serves, and a level 2 pipeline run read against its registry before and after.

Functions that talk to a service take its URL (or the request functions `service_probes`
makes), with a timeout on every request and a deadline on every wait. Nothing here starts a
level or decides what runs when: that is the scenarios' (scenarios/) and the runner's.
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import numpy as np

from workshop.scorecard.cells import Cell, last_words, not_measured, shown

if TYPE_CHECKING:
    import pandas as pd

    from workshop.lab import Lab

JSON = {"content-type": "application/json"}
HTTP_TIMEOUT_S = 10.0
POLL_S = 0.2
# Close enough to call two answers the same model's: float noise, never a different model.
SAME_P = 1e-9


def service_probes(url: str) -> dict[str, Callable]:
    def post(path: str, body: bytes) -> int:
        return httpx.post(
            url + path, content=body, headers=JSON, timeout=HTTP_TIMEOUT_S
        ).status_code

    def get(path: str) -> int:
        return httpx.get(url + path, timeout=HTTP_TIMEOUT_S).status_code

    def get_json(path: str) -> tuple[int, dict]:
        response = httpx.get(url + path, timeout=HTTP_TIMEOUT_S)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {}

    return {"post": post, "get": get, "get_json": get_json}


def served_probabilities(url: str, rows: "pd.DataFrame") -> np.ndarray:
    """What a service answers for each row, as probabilities in class-name order."""
    out = []
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as client:
        for payload in rows.to_dict("records"):
            answer = client.post(f"{url}/predict", json=payload).json()["probabilities"]
            out.append([answer[c] for c in sorted(answer)])
    return np.array(out)


def served_version(url: str) -> str | None:
    """The version level 2's service says it serves; None while it says none."""
    try:
        return httpx.get(f"{url}/ready", timeout=HTTP_TIMEOUT_S).json().get("model_version")
    except (httpx.HTTPError, ValueError):
        return None


def served_card(url: str) -> str | None:
    """The version of the card level 1's service serves; None if it does not say."""
    try:
        return httpx.get(f"{url}/model", timeout=HTTP_TIMEOUT_S).json().get("version")
    except (httpx.HTTPError, ValueError):
        return None


def wait_until_served(url: str, version: str, wait_s: float) -> tuple[bool, str | None]:
    """Poll until the service serves `version` or `wait_s` pass: (served, last seen)."""
    deadline = time.monotonic() + wait_s
    while True:
        seen = served_version(url)
        if seen == version or time.monotonic() >= deadline:
            return seen == version, seen
        time.sleep(POLL_S)


def not_served(version: str, seen: str | None, before: str | None, wait_s: float) -> Cell:
    now = f"still {shown(seen)}" if seen == before else f"serving {shown(seen)}"
    return Cell(False, f"v{version} not served within {wait_s:g} s ({now})")


# ------------------------------------------------------------------- level 2's pipeline runs


@dataclass
class Level2Run:
    """One run of the level 2 pipeline, and what it changed in the registry."""

    result: object | None = None  # the subprocess.CompletedProcess
    champion_before: str | None = None
    champion_after: str | None = None
    registered: list = field(default_factory=list)  # the versions this run registered
    store_error: str = ""  # the registry could not be read, so nothing above is known

    @property
    def failure(self) -> str:
        return last_words(self.result.stderr or self.result.stdout)

    @property
    def said(self) -> str:
        """The run's last line: what it did when it registered nothing."""
        return last_words(self.result.stdout)

    @property
    def version(self) -> str:
        return str(self.registered[-1].version)

    @property
    def tags(self) -> dict[str, str]:
        return self.registered[-1].tags

    @property
    def first_reason(self) -> str:
        return self.tags.get("gate_reasons", "?").split("; ")[0]


def run_level2(lab: "Lab", *args: str) -> Level2Run:
    """Run the pipeline, reading the registry before and after. The versions this run
    registered are the new ones whose MLflow run is the one the pipeline printed."""
    from mlflow.exceptions import MlflowException  # ~5 s to import: only when used

    try:
        before, champion_before = lab.versions(), lab.champion()
        result = lab.run_level2(*args)
        printed = re.search(r"MLflow run (\w+)", result.stdout)
        after = lab.versions()
        registered = [
            after[v]
            for v in sorted(set(after) - set(before), key=int)
            if printed and after[v].run_id == printed[1]
        ]
        return Level2Run(result, champion_before, lab.champion(), registered)
    except (MlflowException, OSError) as error:
        return Level2Run(store_error=last_words(str(error)))


def no_new_champion(run: Level2Run) -> Cell | None:
    """Why a run meant to retrain gives no new champion to wait for; None when it does."""
    if run.store_error:
        return not_measured(f"the registry could not be read ({run.store_error})")
    if run.result.returncode != 0:
        return Cell(False, f"the run failed ({run.failure})")
    if not run.registered:
        return Cell(False, f"no new version ({run.said})")
    if run.champion_after != run.version:
        return Cell(
            False,
            f"no new champion: v{run.version} gate={run.tags.get('gate')} ({run.first_reason})",
        )
    return None
