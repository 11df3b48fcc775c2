"""The scorecard is honest: its cells come from probes, so changing a level's behaviour changes
the cell. Fixture services stand in for a level that answers bad input with a 500 or knows
nothing of its model. A lab with scripted levels (FakeLab, tests/scorecard_fakes.py) and
services in threads check each probe's reading of what it observed: a run that crashed, a
champion that did not change, a level 2 whose gate lets a worse model through, a service that
never follows, and every wait ending at its bound. One slow test runs the real level 2, its gate
switched off, and the cell says it promoted a worse model."""

import subprocess
import time
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from tests.scorecard_fakes import (
    FakeLab,
    cells_of,
    crash,
    fake_services,
    quiet,
    trained_lab,
)
from workshop.lab import Lab, held_out_rows
from workshop.scorecard import (
    Cell,
    Scorecard,
    html_report,
    markdown,
    probe_bad_requests,
    probe_endpoints,
    probe_knowledge,
)
from workshop.scorecard.runner import new_data_and_rollback
from workshop.scorecard.scenarios import (
    corrupted,
    drift,
    level_tests,
    reproducible,
    training,
    worse_model,
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


@pytest.fixture(autouse=True)
def few_birds(monkeypatch):
    """Five held-out birds instead of 69: the probes read them the same, in a fifth of the time."""
    few = held_out_rows().head(5)
    monkeypatch.setattr("workshop.scorecard.table.held_out_rows", lambda: few)


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


# --------------------------------------------------------------------------- new data
# An unbounded wait would hang these tests; their timeout turns a hang into a failure.


@pytest.mark.timeout(60)
def test_new_data_cell_is_a_gap_when_the_gate_keeps_the_champion(tmp_path):
    """A batch whose model the gate rejects leaves the champion as it was: new data is ✗."""
    lab = trained_lab(tmp_path)
    lab.level2 = lambda args: lab.store.register(gate="rejected")
    card = quiet(lab)

    with fake_services(lab, lab.champion) as urls:
        new_data_and_rollback(card, urls)

    level2 = cells_of(card, "new data arrives")["level 2"]
    assert level2.ok is False
    assert "v2" in level2.text and "rejected" in level2.text


@pytest.mark.timeout(60)
def test_new_data_wait_ends_at_its_bound_when_the_service_never_follows(tmp_path):
    """A service that keeps serving the old champion ends the wait at the bound, and says so."""
    lab = trained_lab(tmp_path)
    card = quiet(lab)
    card.serve_wait_s = 1.0
    start = time.monotonic()

    with fake_services(lab, lambda: "1") as urls:
        new_data_and_rollback(card, urls)

    level2 = cells_of(card, "new data arrives")["level 2"]
    assert level2.ok is False
    assert level2.text == "v2 not served within 1 s (still v1)"
    assert time.monotonic() - start < 20


@pytest.mark.timeout(60)
def test_new_data_cell_times_a_new_champion_served(tmp_path):
    """A service that follows the new champion gets ✓ with the seconds it took."""
    lab = trained_lab(tmp_path)
    card = quiet(lab)

    with fake_services(lab, lab.champion) as urls:
        new_data_and_rollback(card, urls)

    level2 = cells_of(card, "new data arrives")["level 2"]
    assert level2.ok is True
    assert level2.text.startswith("automatic:") and "v2 served (was v1)" in level2.text


@pytest.mark.timeout(60)
def test_new_data_cells_of_levels_0_and_1_follow_their_services(tmp_path):
    """A level 0 server and a level 1 service that pick up a new model by themselves get ✓;
    ones that keep the model they started with get ✗, both from what they answer."""
    cells = {}
    for follow in (True, False):
        lab = trained_lab(tmp_path / str(follow))
        card = quiet(lab)
        with fake_services(lab, lab.champion, follow=follow) as urls:
            new_data_and_rollback(card, urls)
        cells[follow] = cells_of(card, "new data arrives")

    assert cells[True]["level 0"].ok is True and cells[True]["level 1"].ok is True
    assert cells[False]["level 0"].ok is False and "old pickle" in cells[False]["level 0"].text
    assert cells[False]["level 1"].ok is False and "still serves" in cells[False]["level 1"].text


# ------------------------------------------------------------------ drift in served traffic


@pytest.mark.timeout(60)
def test_drift_cells_follow_what_each_service_shows(tmp_path):
    """Level 2 gets ✓ for drift (the monitor's verdict, then the retrained version served)
    and for live accuracy (read from its /metrics after the feedback it took); levels 0 and 1
    get ✗ from what they answered: no /metrics, no /feedback."""
    lab = trained_lab(tmp_path)
    card = quiet(lab)

    with fake_services(lab, lab.champion) as urls:
        (_, noticed), (_, accuracy) = drift.observe(card, urls)

    assert (
        noticed["level 2"].ok is True
        and "v2, trained on 200 confirmed birds" in noticed["level 2"].text
    )
    assert lab.level2_calls[-1] == ("--drift-run-id", "monitor1")
    assert len(lab.feedback) == 200
    assert accuracy["level 2"].ok is True and "on 200 confirmed birds" in accuracy["level 2"].text
    for level in ("level 0", "level 1"):
        assert noticed[level].ok is False and "GET /metrics 404" in noticed[level].text
        assert "200 of 200 drifted requests answered" in noticed[level].text
        assert accuracy[level].ok is False and "POST /feedback 404" in accuracy[level].text


@pytest.mark.timeout(60)
def test_drift_cell_of_level2_is_a_gap_when_the_monitor_finds_nothing(tmp_path):
    """A monitor that does not ask for a retraining gives ✗ naming what it said, and nothing
    is retrained."""
    lab = trained_lab(tmp_path)
    lab.monitor_says = "level 2 monitor: clean: no drift in 200 answers against reference\n"
    card = quiet(lab)

    with fake_services(lab, lab.champion) as urls:
        (_, noticed), _ = drift.observe(card, urls)

    level2 = noticed["level 2"]
    assert level2.ok is False and level2.text.startswith("not detected: level 2 monitor: clean")
    assert lab.level2_calls == []


# --------------------------------------------------------------------------- rollback


@pytest.mark.timeout(60)
def test_rollback_wait_ends_at_its_bound_when_the_service_never_follows(tmp_path):
    """A service that never serves the rolled-back version ends the wait at the bound."""
    lab = trained_lab(tmp_path)
    card = quiet(lab)
    card.serve_wait_s = 1.0

    with fake_services(lab, lambda: "2") as urls:
        new_data_and_rollback(card, urls)

    level2 = cells_of(card, "rollback")["level 2"]
    assert level2.ok is False
    assert level2.text == "v1 not served within 1 s (still v2)"


@pytest.mark.timeout(60)
def test_rollback_cell_of_level0_looks_for_the_previous_pickle(tmp_path):
    """A level 0 that keeps its previous pickle on disk is not marked ✗ "impossible"."""
    lab = trained_lab(tmp_path)
    lab.keep_previous_pickle = True
    card = quiet(lab)

    with fake_services(lab, lab.champion) as urls:
        new_data_and_rollback(card, urls)

    level0 = cells_of(card, "rollback")["level 0"]
    assert level0.ok is not False
    assert "model.previous.pkl" in level0.text


# ----------------------------------------------------------------- corrupted batch, worse model


def test_corrupted_batch_cell_names_a_store_error_instead_of_blocked(tmp_path):
    """A level 2 run that fails on its store reads as that error, not as blocked or not."""
    lab = trained_lab(tmp_path)
    lab.level2 = crash("sqlite3.OperationalError: database is locked")
    card = quiet(lab)

    _, cells = corrupted.observe(card)

    level2 = cells["level 2"]
    assert level2.ok is not True
    assert "blocked" not in level2.text
    assert "sqlite3.OperationalError: database is locked" in level2.text


def refusal(quarantine: Path):
    """A level 2 run that validation stops, as the pipeline words it."""
    stderr = (
        f"level 2: batch corrupted.csv failed 2 of 20 expectations and was quarantined in "
        f"{quarantine}:\n  - body_mass_g between 2700 and 6300\n  - bill_length_mm not null\n"
    )
    return lambda args: subprocess.CompletedProcess([], 1, "", stderr)


def test_corrupted_batch_cell_is_blocked_only_with_the_batch_quarantined(tmp_path):
    """Validation's message counts as blocked only if the quarantine folder holds the batch."""
    quarantine = tmp_path / "quarantine" / "corrupted"
    lab = trained_lab(tmp_path)
    lab.level2 = refusal(quarantine)
    card = quiet(lab)

    without = corrupted.observe(card)[1]["level 2"]
    quarantine.mkdir(parents=True)
    (quarantine / "failed_expectations.txt").write_text("body_mass_g\n")
    with_folder = corrupted.observe(card)[1]["level 2"]

    assert without.ok is not True and "quarantine" in without.text
    assert with_folder.ok is True
    assert with_folder.text == "blocked: 2 of 20 expectations failed, batch quarantined"


def test_worse_model_cell_names_a_crash_instead_of_an_earlier_rejection(tmp_path):
    """A run that crashes is not credited with an earlier run's rejected version."""
    lab = trained_lab(tmp_path)
    lab.store.register(gate="rejected")  # an earlier run's rejection: v2
    lab.level2 = crash("mlflow.exceptions.MlflowException: the store is read-only")
    card = quiet(lab)

    _, cells = worse_model.observe(card)

    level2 = cells["level 2"]
    assert level2.ok is not True
    assert "blocked" not in level2.text
    assert "the store is read-only" in level2.text


def test_worse_model_cell_blocked_by_this_runs_rejection(tmp_path):
    """A version this run registered with gate=rejected, champion unchanged, is ✓ blocked."""
    lab = trained_lab(tmp_path)
    lab.level2 = lambda args: lab.store.register(gate="rejected")
    card = quiet(lab)

    _, cells = worse_model.observe(card)

    level2 = cells["level 2"]
    assert level2.ok is True
    assert level2.text == "blocked by the gate: macro F1 0.461 is below the floor 0.9"


def test_worse_model_cell_shows_a_level2_whose_gate_lets_it_through(tmp_path):
    """A worse model that this run registered and made champion is ✗ PROMOTED, not blocked."""
    lab = trained_lab(tmp_path)
    lab.level2 = lambda args: lab.store.register(gate="passed")
    card = quiet(lab)

    _, cells = worse_model.observe(card)

    level2 = cells["level 2"]
    assert level2.ok is False
    assert level2.text == "PROMOTED: v2 is the champion"


def test_worse_model_cells_of_levels_0_and_1_come_from_what_was_written(tmp_path):
    """Level 0's cell names the pickle it wrote; level 1's the hand-off that took the model."""
    lab = trained_lab(tmp_path)
    card = quiet(lab)

    _, cells = worse_model.observe(card)

    assert cells["level 0"].text.startswith("notebook wrote model.pkl")
    assert (lab.root / "level1" / "worse-serving" / "card.json").is_file()
    assert cells["level 1"].text.startswith("hand-off took it")


# ------------------------------------------------------- training twice, records, tests


def test_train_everything_forces_the_second_level2_run(tmp_path):
    """The same batch twice is skipped by level 2 unless forced: the second run passes --force."""
    lab = FakeLab(tmp_path / "lab")

    training.train_everything(quiet(lab))

    assert lab.level2_calls == [(), ("--force",)]


def test_reproducibility_cell_compares_level2_fingerprint_tags(tmp_path):
    """Level 2's two versions are compared by their fingerprint tags, not by loading them."""
    lab = FakeLab(tmp_path / "lab")
    fingerprints = iter(["aaaa", "bbbb"])
    lab.level2 = lambda args: lab.store.register(fingerprint=next(fingerprints))
    card = quiet(lab)
    training.train_everything(card)

    _, cells = reproducible.observe(card)

    assert cells["level 2"].ok is False
    assert cells["level 2"].text == "registry v1 and v2: fingerprints differ"
    assert "metrics.json records accuracy, macro_f1" in cells["level 0"].text


def test_tests_cell_of_level0_counts_what_pytest_finds(tmp_path):
    """Level 0's tests cell is pytest's answer on the level's folder, like the other levels."""
    lab = FakeLab(tmp_path / "lab")
    lab.pytest_output = {
        "level0_notebook": "3 passed in 0.1s\n",
        "level1_devops/tests": "5 passed in 1.0s\n",
        "level2_pipelines/tests": "7 passed in 9.0s\n",
    }
    card = quiet(lab)

    _, cells = level_tests.observe(card, quick=False)

    assert str(cells["level 0"]) == "✓ 3 passed"


# ------------------------------------------------------------------------ the real levels


@pytest.mark.lab
def test_worse_model_cell_of_a_real_level2_without_its_gate(tmp_path):
    """With the gate's floors at zero, the real level 2 promotes a worse model (a third of its
    birds mislabelled, not enough to fail the smoke test) and the cell says so. One pipeline
    run in a fresh lab, nothing else: the cheapest proof that the probes read the real level
    as the scripted levels above say they do."""
    no_gate = {
        "LEVEL2_MACRO_F1_FLOOR": "0",
        "LEVEL2_REGRESSION_TOLERANCE": "1",
        "LEVEL2_ISLAND_ACCURACY_FLOOR": "0",
    }
    card = Scorecard(Lab(tmp_path / "lab", extra_env=no_gate), lambda message: None)

    cell = worse_model.level2(card, worse_model.batch(card.lab, shuffled_share=0.35))

    assert cell.ok is False
    assert cell.text == "PROMOTED: v1 is the champion"


def test_tests_cell_names_the_first_test_that_failed():
    """A red suite says which test failed first, from pytest's own short summary."""
    output = (
        "..F.\nFAILED level2_pipelines/tests/flows/test_warm.py::test_x - AssertionError\n"
        "1 failed, 3 passed in 1.00s\n"
    )

    cell = level_tests.tests_cell(1, output, collect_only=False)

    assert cell.ok is False and cell.text == "1 failed, 3 passed (first: test_x)"
