"""The scorecard is honest: its cells come from probes, so changing a level's behaviour changes
the cell. Fixture services stand in for a level that answers bad input with a 500 or knows
nothing of its model, and a level 2 with its gate switched off lets a worse model through."""

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from shared.lab import Lab
from shared.scorecard import (
    Cell,
    Scorecard,
    html_report,
    markdown,
    probe_bad_requests,
    probe_endpoints,
    probe_knowledge,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bill_length_mm: float


def naive_app() -> FastAPI:
    """Answers bad input with a 500, like a hand-made server that trusts its input."""
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request):
        payload = await request.json()
        return {"value": float(payload["bill_length_mm"]) * 2}

    return app


def validating_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(penguin: Strict):
        return {"value": penguin.bill_length_mm}

    return app


def poster(app: FastAPI):
    client = TestClient(app, raise_server_exceptions=False)
    return lambda path, body: (
        client.post(path, content=body, headers={"content-type": "application/json"}).status_code
    )


def test_bad_request_cell_follows_the_service():
    """The same probe marks a 500-answering service ✗ and a validating one differently."""
    naive = probe_bad_requests(poster(naive_app()))
    validating = probe_bad_requests(poster(validating_app()))

    assert naive.ok is False and "500" in naive.text
    assert validating.ok is True and validating.text == "11/11 refused with 4xx"


def test_endpoint_and_knowledge_cells_follow_the_service():
    """A service with /health, /ready and a lineage-bearing /model scores ✓; one without, ✗."""
    app = FastAPI()
    lineage = {"version": "3", "run_id": "r", "batch_id": "b", "data_checksum": "d"}
    for path, body in (("/health", {}), ("/ready", {}), ("/model", lineage)):
        app.get(path)(lambda body=body: body)
    client, bare = TestClient(app), TestClient(FastAPI())

    def get_json(c):
        return lambda path: (c.get(path).status_code, c.get(path).json())

    assert probe_endpoints(lambda p: client.get(p).status_code).ok is True
    assert probe_endpoints(lambda p: bare.get(p).status_code).ok is False
    assert probe_knowledge(get_json(client)).text.startswith("full lineage")
    assert probe_knowledge(get_json(bare)).text.startswith("nothing")


@pytest.mark.slow
def test_worse_model_cell_shows_a_level2_without_its_gate(tmp_path):
    """With the gate's floors at zero, level 2 promotes a worse model (a third of its birds
    mislabelled, not enough to fail the smoke test) and the cell says so."""
    no_gate = {
        "LEVEL2_MACRO_F1_FLOOR": "0",
        "LEVEL2_REGRESSION_TOLERANCE": "1",
        "LEVEL2_ISLAND_ACCURACY_FLOOR": "0",
    }
    card = Scorecard(Lab(tmp_path / "lab", extra_env=no_gate), lambda message: None)
    card.lab.run_level2().check_returncode()

    card.probe_worse_model(shuffled_share=0.35)

    (capability, cells) = card.rows[-1]
    assert capability == "a worse model"
    assert cells["level 2"].ok is False
    assert cells["level 2"].text.startswith("PROMOTED")


def test_reports_carry_every_row_and_the_chart():
    """Markdown has a row per capability; the HTML embeds the latency chart as an image."""
    rows = [("bad requests", {lv: Cell(True, "11/11") for lv in ("level 0", "level 1", "level 2")})]
    latency = {
        lv: {"p50_ms": 1.0, "p99_ms": 2.0, "requests_per_s": 100.0}
        for lv in ("level 0", "level 1", "level 2")
    }

    text = markdown(rows, "now")
    page = html_report(rows, latency, "now")

    assert "| bad requests | ✓ 11/11 | ✓ 11/11 | ✓ 11/11 |" in text
    assert '<img alt="latency and throughput per level" src="data:image/png;base64,' in page
