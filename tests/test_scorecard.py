"""The scorecard is honest: its cells come from probes, so changing a level's behaviour changes
the cell. Fixture services stand in for a level that answers bad input with a 500 or knows
nothing of its model, and a level 2 with its gate switched off lets a worse model through.
A lab with scripted levels (FakeLab) and services in threads check each probe's reading of what
it observed: a run that crashed, a champion that did not change, a service that never follows,
and every wait ending at its bound."""

import hashlib
import json
import pickle
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import uvicorn
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
from shared.servers import free_port


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


# ------------------------------------------------------------------ a lab with scripted levels


class ConstantModel:
    """Stands in for level 0's pickled pipeline: the same probabilities for every bird."""

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = probabilities

    def predict_proba(self, frame) -> np.ndarray:
        return np.tile(self.probabilities, (len(frame), 1))


class FakeRegistry:
    """Level 2's registry as the scorecard reads it: versions with tags, and the champion."""

    def __init__(self) -> None:
        self.versions: dict[str, SimpleNamespace] = {}
        self.champion: str | None = None

    def register(self, gate: str = "passed", **tags: str) -> subprocess.CompletedProcess:
        """What a level 2 run that trains does: a version, champion if it passed, its output."""
        version, run_id = str(len(self.versions) + 1), f"run{len(self.versions) + 1}"
        reasons = "macro F1 0.461 is below the floor 0.9" if gate == "rejected" else "-"
        tags = {"gate": gate, "gate_reasons": reasons, **tags}
        if gate == "passed" and self.champion:
            tags["previous_champion"] = self.champion
        self.versions[version] = SimpleNamespace(version=version, run_id=run_id, tags=tags)
        if gate == "passed":
            self.champion = version
        return subprocess.CompletedProcess([], 0, f"level 2: batch b, MLflow run {run_id}\n", "")


class FakeLab(Lab):
    """A lab whose levels are scripted, so a probe takes milliseconds: level 0 pickles a
    ConstantModel, level 1 writes a card, and a level 2 run is whatever `self.level2` returns
    (by default: a new version that passes the gate)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.store = FakeRegistry()
        self.level2 = lambda args: self.store.register()
        self.level2_calls: list[tuple[str, ...]] = []
        self.pytest_output: dict[str, str] = {}
        self.keep_previous_pickle = False

    def registry(self) -> FakeRegistry:  # never a real MLflow store, not even by accident
        return self.store

    def champion(self) -> str | None:
        return self.store.champion

    def versions(self) -> dict[str, SimpleNamespace]:
        return dict(self.store.versions)

    def train_level0(self, out: str = "level0", new_batch: Path | None = None) -> dict:
        folder = self.root / out
        folder.mkdir(parents=True, exist_ok=True)
        if self.keep_previous_pickle and (folder / "model.pkl").exists():
            (folder / "model.pkl").rename(folder / "model.previous.pkl")
        model = ConstantModel([0.7, 0.2, 0.1] if new_batch else [0.8, 0.1, 0.1])
        (folder / "model.pkl").write_bytes(pickle.dumps(model))
        (folder / "metrics.json").write_text('{"accuracy": 0.9, "macro_f1": 0.9}')
        return {"accuracy": 0.9, "macro_f1": 0.9}

    def train_level1(self, out: Path | None = None, new_batch: Path | None = None) -> dict:
        out = out or self.root / "level1" / "artifacts"
        out.mkdir(parents=True, exist_ok=True)
        version = hashlib.sha256(str(new_batch).encode()).hexdigest()[:12]
        card = {
            "version": version,
            "fingerprint": version,
            "trained_at": str(time.time_ns()),
            "metrics": {"macro_f1": 0.9},
        }
        (out / "card.json").write_text(json.dumps(card))
        return card

    def hand_off_level1(self, source: Path | None = None, destination: Path | None = None):
        source = source or self.root / "level1" / "artifacts"
        destination = destination or self.root / "level1" / "serving"
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "card.json", destination / "card.json")

    def run_level2(self, *args: str, extra_env=None) -> subprocess.CompletedProcess:
        self.level2_calls.append(args)
        return self.level2(args)

    def run(self, *args: str, extra_env=None, check: bool = True):
        if args[:2] == ("level2_pipelines.registry", "rollback"):
            current = self.store.champion
            previous = self.store.versions[current].tags.get("previous_champion")
            if previous is None:
                refusal = f"level 2 rollback: penguins-species v{current} replaced no earlier one"
                return subprocess.CompletedProcess(args, 1, "", refusal + "\n")
            self.store.champion = previous
            moved = f"level 2 rollback: champion moved from v{current} back to v{self.champion()}"
            return subprocess.CompletedProcess(args, 0, moved + "\n", "")
        if args[0] == "pytest":
            return subprocess.CompletedProcess(args, 0, self.pytest_output.get(args[1], ""), "")
        raise AssertionError(f"the fake lab does not run {args}")


def trained_lab(tmp_path: Path) -> FakeLab:
    """Every level trained once and in service; level 2 has v1 as its champion."""
    lab = FakeLab(tmp_path / "lab")
    lab.train_level0()
    lab.train_level1()
    lab.hand_off_level1()
    lab.store.register()
    return lab


@contextmanager
def fake_services(lab: FakeLab, level2_serves, follow: bool = False) -> Iterator[dict[str, str]]:
    """The three services, in threads: levels 0 and 1 load their model once (or at every
    request if `follow`), level 2's /ready reports `level2_serves()`."""
    pickle_path = lab.root / "level0" / "model.pkl"
    card_path = lab.root / "level1" / "serving" / "card.json"
    loaded = {"level 0": pickle.loads(pickle_path.read_bytes()), "level 1": card_path.read_text()}
    level0, level1, level2 = FastAPI(), FastAPI(), FastAPI()

    @level0.post("/predict")
    def predict() -> dict:
        model = pickle.loads(pickle_path.read_bytes()) if follow else loaded["level 0"]
        row = model.predict_proba([None])[0]
        return {"probabilities": dict(zip(("Adelie", "Chinstrap", "Gentoo"), row, strict=True))}

    @level1.get("/model")
    def card() -> dict:
        return json.loads(card_path.read_text() if follow else loaded["level 1"])

    @level2.get("/ready")
    def ready() -> dict:
        return {"status": "ready", "model_version": level2_serves()}

    servers, threads = {}, []
    for level, app in (("level 0", level0), ("level 1", level1), ("level 2", level2)):
        servers[level] = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
        )
        threads.append(threading.Thread(target=servers[level].run, daemon=True))
        threads[-1].start()
    while not all(server.started for server in servers.values()):
        time.sleep(0.01)
    try:
        yield {lv: f"http://127.0.0.1:{s.config.port}" for lv, s in servers.items()}
    finally:
        for server in servers.values():
            server.should_exit = True
        for thread in threads:
            thread.join()


def cells_of(card: Scorecard, capability: str) -> dict[str, Cell]:
    return next(cells for name, cells in card.rows if name == capability)


def quiet(lab: Lab) -> Scorecard:
    return Scorecard(lab, lambda message: None)


def crash(message: str):
    """A level 2 run that dies of something other than its data, with a traceback."""
    stderr = f'Traceback (most recent call last):\n  File "x.py", line 1\n{message}\n'
    return lambda args: subprocess.CompletedProcess(
        [], 1, "level 2: Prefect API temporary\n", stderr
    )


# --------------------------------------------------------------------------- new data
# An unbounded wait would hang these tests; their timeout turns a hang into a failure.


@pytest.mark.timeout(60)
def test_new_data_cell_is_a_gap_when_the_gate_keeps_the_champion(tmp_path):
    """A batch whose model the gate rejects leaves the champion as it was: new data is ✗."""
    lab = trained_lab(tmp_path)
    lab.level2 = lambda args: lab.store.register(gate="rejected")
    card = quiet(lab)

    with fake_services(lab, lab.champion) as urls:
        card.probe_new_data_and_rollback(urls)

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
        card.probe_new_data_and_rollback(urls)

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
        card.probe_new_data_and_rollback(urls)

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
            card.probe_new_data_and_rollback(urls)
        cells[follow] = cells_of(card, "new data arrives")

    assert cells[True]["level 0"].ok is True and cells[True]["level 1"].ok is True
    assert cells[False]["level 0"].ok is False and "old pickle" in cells[False]["level 0"].text
    assert cells[False]["level 1"].ok is False and "still serves" in cells[False]["level 1"].text


# --------------------------------------------------------------------------- rollback


@pytest.mark.timeout(60)
def test_rollback_wait_ends_at_its_bound_when_the_service_never_follows(tmp_path):
    """A service that never serves the rolled-back version ends the wait at the bound."""
    lab = trained_lab(tmp_path)
    card = quiet(lab)
    card.serve_wait_s = 1.0

    with fake_services(lab, lambda: "2") as urls:
        card.probe_new_data_and_rollback(urls)

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
        card.probe_new_data_and_rollback(urls)

    level0 = cells_of(card, "rollback")["level 0"]
    assert level0.ok is not False
    assert "model.previous.pkl" in level0.text


# ----------------------------------------------------------------- corrupted batch, worse model


def test_corrupted_batch_cell_names_a_store_error_instead_of_blocked(tmp_path):
    """A level 2 run that fails on its store reads as that error, not as blocked or not."""
    lab = trained_lab(tmp_path)
    lab.level2 = crash("sqlite3.OperationalError: database is locked")
    card = quiet(lab)

    card.probe_bad_data()

    level2 = cells_of(card, "a corrupted training batch")["level 2"]
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

    card.probe_bad_data()
    quarantine.mkdir(parents=True)
    (quarantine / "failed_expectations.txt").write_text("body_mass_g\n")
    card.probe_bad_data()

    without, with_folder = (cells["level 2"] for _, cells in card.rows)
    assert without.ok is not True and "quarantine" in without.text
    assert with_folder.ok is True
    assert with_folder.text == "blocked: 2 of 20 expectations failed, batch quarantined"


def test_worse_model_cell_names_a_crash_instead_of_an_earlier_rejection(tmp_path):
    """A run that crashes is not credited with an earlier run's rejected version."""
    lab = trained_lab(tmp_path)
    lab.store.register(gate="rejected")  # an earlier run's rejection: v2
    lab.level2 = crash("mlflow.exceptions.MlflowException: the store is read-only")
    card = quiet(lab)

    card.probe_worse_model()

    level2 = cells_of(card, "a worse model")["level 2"]
    assert level2.ok is not True
    assert "blocked" not in level2.text
    assert "the store is read-only" in level2.text


def test_worse_model_cell_blocked_by_this_runs_rejection(tmp_path):
    """A version this run registered with gate=rejected, champion unchanged, is ✓ blocked."""
    lab = trained_lab(tmp_path)
    lab.level2 = lambda args: lab.store.register(gate="rejected")
    card = quiet(lab)

    card.probe_worse_model()

    level2 = cells_of(card, "a worse model")["level 2"]
    assert level2.ok is True
    assert level2.text == "blocked by the gate: macro F1 0.461 is below the floor 0.9"


def test_worse_model_cells_of_levels_0_and_1_come_from_what_was_written(tmp_path):
    """Level 0's cell names the pickle it wrote; level 1's the hand-off that took the model."""
    lab = trained_lab(tmp_path)
    card = quiet(lab)

    card.probe_worse_model()

    cells = cells_of(card, "a worse model")
    assert cells["level 0"].text.startswith("notebook wrote model.pkl")
    assert (lab.root / "level1" / "worse-serving" / "card.json").is_file()
    assert cells["level 1"].text.startswith("hand-off took it")


# ------------------------------------------------------- training twice, records, tests


def test_train_everything_forces_the_second_level2_run(tmp_path):
    """The same batch twice is skipped by level 2 unless forced: the second run passes --force."""
    lab = FakeLab(tmp_path / "lab")

    quiet(lab).train_everything()

    assert lab.level2_calls == [(), ("--force",)]


def test_reproducibility_cell_compares_level2_fingerprint_tags(tmp_path):
    """Level 2's two versions are compared by their fingerprint tags, not by loading them."""
    lab = FakeLab(tmp_path / "lab")
    fingerprints = iter(["aaaa", "bbbb"])
    lab.level2 = lambda args: lab.store.register(fingerprint=next(fingerprints))
    card = quiet(lab)
    card.train_everything()

    card.probe_reproducibility()

    cells = cells_of(card, "reproducible training (two runs)")
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

    card.probe_tests(quick=False)

    cells = cells_of(card, "tests that guard the level")
    assert str(cells["level 0"]) == "✓ 3 passed"
