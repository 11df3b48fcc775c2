"""Deploy: make the running service serve a version, and confirm that it does.

The service follows the `champion` alias on its own (it polls the registry). Deploying tells it
to look now, through its admin endpoint, and waits until `GET /model` shows the version, so the
pipeline ends only when the new model is really in service. Deploying runs after the alias
moved, so it never fails the run: what it could not confirm it says, naming the cause. No
service running is not an error either: the service loads the champion when it starts.

Before a candidate is registered, `smoke_test` serves it in-process through the service's own
app and checks the contract: the service that will deploy it is the one that tries it first.
"""

import asyncio
import time

import httpx

from level2_pipelines.api import create_app
from level2_pipelines.follower import ServedModel
from level2_pipelines.model import Lineage
from level2_pipelines.predict import serving_predictor
from level2_pipelines.settings import Settings
from level2_pipelines.train import Candidate
from shared.contract import EXPECTED_SPECIES, INVALID_EXAMPLES, VALID_EXAMPLES

CONFIRM_TIMEOUT_S = 15.0
RELOADED = "it reloaded"


def follow_in_service(
    settings: Settings, version: str, timeout_s: float = CONFIRM_TIMEOUT_S
) -> str:
    """Ask the service to reload and wait until it serves `version`; say what happened."""
    base = f"http://{settings.host}:{settings.port}"
    token = settings.admin_token_value()
    asked = "no admin token here, so it was left to its next poll"
    with httpx.Client(base_url=base, timeout=5) as http:
        try:
            http.get("/health")
            if token is not None:
                answer = http.post("/admin/reload", headers={"Authorization": f"Bearer {token}"})
                asked = _reload_answer(answer)
        except httpx.TransportError:
            return f"service: not running at {base}; `make level2-serve` will serve v{version}"
        deadline, served = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            try:
                served = http.get("/model").json().get("version")
            except (httpx.HTTPError, ValueError):
                served = None  # restarting, or busy: ask again until the deadline
            if served == version:
                note = "" if asked == RELOADED else f" ({asked})"
                return f"service: {base} now serves v{version}{note}"
            time.sleep(0.2)
    return (
        f"service: promoted, service not confirmed: {base} still serves "
        f"{f'v{served}' if served else 'no model'} after {timeout_s:g} s ({asked}; see its log)"
    )


def _reload_answer(answer: httpx.Response) -> str:
    if answer.status_code == 401:
        return (
            "it refused the admin token (401): LEVEL2_ADMIN_TOKEN here differs from the "
            "service's, so it was left to its next poll"
        )
    if answer.is_error:
        return f"its reload answered {answer.status_code}: {answer.text[:200]}"
    return RELOADED


def smoke_test(candidate: Candidate, settings: Settings) -> list[str]:
    """Serve the candidate in-process through the service's own app; check the contract.
    Returns what failed (empty: it serves as the contract says)."""
    stub = Lineage(
        name=settings.model_name,
        version="candidate",
        run_id=candidate.run_id,
        git_commit="",
        data_checksum=candidate.training_checksum,
        batch_id="",
        flow_run_id="",
        trained_at="",
        metrics={},
    )
    app = create_app(
        settings, ServedModel(lineage=stub, predictor=serving_predictor(candidate.pipeline))
    )

    async def probe() -> list[str]:
        problems = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://candidate") as http:
            for name, payload in VALID_EXAMPLES.items():
                response = await http.post("/predict", json=payload)
                expected = EXPECTED_SPECIES.get(name)
                if response.status_code != 200:
                    problems.append(f"smoke test: {name} answered {response.status_code}")
                elif expected and response.json()["species"] != expected:
                    problems.append(
                        f"smoke test: {name} classified as {response.json()['species']}"
                    )
            for example in INVALID_EXAMPLES:
                response = await http.post(
                    "/predict", content=example.body, headers={"content-type": "application/json"}
                )
                if not 400 <= response.status_code < 500:
                    problems.append(f"smoke test: {example.name} answered {response.status_code}")
        return problems

    return asyncio.run(probe())
