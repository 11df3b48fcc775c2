"""Scripted levels for the scorecard's tests: a lab whose commands take milliseconds, and its
three services in threads. Used by `test_scorecard.py` (each cell's reading) and
`test_scorecard_run.py` (the whole run, the demo)."""

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import PlainTextResponse

from level2_pipelines.rollout import answers_caller
from shared.servers import free_port
from workshop.lab import SERVICES, Lab, ServiceFailed
from workshop.scorecard import Cell, Scorecard

CLASSES = ("Adelie", "Chinstrap", "Gentoo")


class ConstantModel:
    """Stands in for level 0's pickled pipeline: the same probabilities for every bird."""

    classes_ = np.array(("Adelie", "Chinstrap", "Gentoo"))

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = probabilities

    def predict_proba(self, frame) -> np.ndarray:
        return np.tile(self.probabilities, (len(frame), 1))


class FakeRegistry:
    """Level 2's registry as the scorecard reads it: versions with tags, and the champion."""

    def __init__(self) -> None:
        self.versions: dict[str, SimpleNamespace] = {}
        self.champion: str | None = None
        self.challenger: tuple[str, float] | None = None  # a canary: its version and share

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
    (by default: a new version that passes the gate). `calls` logs every command, in order."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.store = FakeRegistry()
        self.level2 = lambda args: self.store.register()
        self.level2_calls: list[tuple[str, ...]] = []
        self.calls: list[str] = []
        self.pytest_output: dict[str, str] = {}
        self.keep_previous_pickle = False
        self.follow = False  # services that pick up a new model by themselves
        self.on_pytest: Callable[[str], None] = lambda folder: None
        # What `make level2-monitor` says: by default, drift found and a retraining asked for.
        self.monitor_says = (
            "level 2 monitor: asked: drift in bill_length_mm; penguins.drift.detected sent\n"
            "level 2 monitor: report /lab/drift.html (MLflow run monitor1)\n"
        )
        self.feedback: dict[str, str] = {}  # prediction id -> species, as level 2 keeps them
        self.answered_by: dict[str, tuple[str, str]] = {}  # prediction id -> version, species
        # A call (as `calls` logs it) that fails as the level's command would: with its error.
        self.failing: dict[str, subprocess.CalledProcessError] = {}
        self.service_fails: str | None = None  # a level whose service does not start
        (self.root / "level2" / "admin_token").write_text("fake-token")
        self._calls_lock = threading.Lock()

    def log(self, call: str) -> None:
        with self._calls_lock:
            self.calls.append(call)
        if call in self.failing:
            raise self.failing[call]

    def registry(self) -> FakeRegistry:  # never a real MLflow store, not even by accident
        return self.store

    def champion(self) -> str | None:
        return self.store.champion

    def versions(self) -> dict[str, SimpleNamespace]:
        return dict(self.store.versions)

    def tracked_runs(self) -> int:
        return len(self.store.versions)

    def train_level0(self, out: str = "level0", new_batch: Path | None = None) -> dict:
        self.log(f"level 0 train {out}")
        folder = self.root / out
        folder.mkdir(parents=True, exist_ok=True)
        if self.keep_previous_pickle and (folder / "model.pkl").exists():
            (folder / "model.pkl").rename(folder / "model.previous.pkl")
        model = ConstantModel([0.7, 0.2, 0.1] if new_batch else [0.8, 0.1, 0.1])
        (folder / "model.pkl").write_bytes(pickle.dumps(model))
        (folder / "metrics.json").write_text('{"accuracy": 0.9, "macro_f1": 0.9}')
        return {"accuracy": 0.9, "macro_f1": 0.9}

    def train_level1(self, out: Path | None = None, new_batch: Path | None = None) -> dict:
        self.log("level 1 train")
        out = out or self.root / "level1" / "artifacts"
        out.mkdir(parents=True, exist_ok=True)
        version = hashlib.sha256(str(new_batch).encode()).hexdigest()[:12]
        card = {
            "version": version,
            "fingerprint": version,
            "trained_at": str(time.time_ns()),
            "metrics": {"accuracy": 0.9, "macro_f1": 0.9},
        }
        (out / "card.json").write_text(json.dumps(card))
        return card

    def hand_off_level1(self, source: Path | None = None, destination: Path | None = None):
        source = source or self.root / "level1" / "artifacts"
        destination = destination or self.root / "level1" / "serving"
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "card.json", destination / "card.json")

    def run_level2(self, *args: str, extra_env=None) -> subprocess.CompletedProcess:
        self.log("level 2 run")
        self.level2_calls.append(args)
        result = self.level2(args)
        result.args = [sys.executable, "-m", "level2_pipelines.pipeline_cli", *args]  # as the lab's
        return result

    def run(self, *args: str, extra_env=None, check: bool = True, lab_env: bool = True):
        if args[:2] == ("level2_pipelines.registry", "rollback"):
            current = self.store.champion
            previous = self.store.versions[current].tags.get("previous_champion")
            if previous is None:
                refusal = f"level 2 rollback: penguins-species v{current} replaced no earlier one"
                return subprocess.CompletedProcess(args, 1, "", refusal + "\n")
            self.store.champion = previous
            moved = f"level 2 rollback: champion moved from v{current} back to v{self.champion()}"
            return subprocess.CompletedProcess(args, 0, moved + "\n", "")
        if args[0] == "level2_pipelines.rollout":
            self.log(" ".join(("level 2 rollout", *args[1:])))
            return subprocess.CompletedProcess(args, 0, self.rollout(*args[1:]) + "\n", "")
        if args[0] == "level2_pipelines.monitor":
            self.log("level 2 monitor")
            return subprocess.CompletedProcess(args, 0, self.monitor_says, "")
        if args[0] == "pytest":
            self.log(f"pytest {args[1]}")
            self.on_pytest(args[1])
            return subprocess.CompletedProcess(args, 0, self.pytest_output.get(args[1], ""), "")
        raise AssertionError(f"the fake lab does not run {args}")

    def rollout(self, action: str, *args: str) -> str:
        """`rollout start canary --share S --version V`, or `judge`: the canary's callers (its
        answers are always Chinstrap) judged against the champion's on the feedback given."""
        if action == "start":
            version, share = (
                args[args.index("--version") + 1],
                float(args[args.index("--share") + 1]),
            )
            self.store.challenger = (version, share)
            return f"level 2 rollout: v{version} is challenger (canary: {share:.0%} of callers)"
        version, _ = self.store.challenger
        right = {
            v: [
                self.answered_by[i][1] == s
                for i, s in self.feedback.items()
                if self.answered_by[i][0] == v
            ]
            for v in (version, self.store.champion)
        }
        ours, theirs = (sum(r) / max(1, len(r)) for r in right.values())
        self.store.challenger = None
        return (
            f"level 2 judge: withdraw v{version} (canary): live accuracy {ours:.3f} on "
            f"{len(right[version])} confirmed birds against the champion's {theirs:.3f}"
        )

    @contextmanager
    def prefect_server(self) -> Iterator[str]:
        yield "not started (a scripted level 2 needs none)"

    @contextmanager
    def services(self, levels=("level 0", "level 1", "level 2")) -> Iterator[dict[str, str]]:
        if self.service_fails in levels:
            module = SERVICES[self.service_fails][0]
            raise ServiceFailed(
                f"{self.service_fails}'s service did not start: {module} exited early:\n"
                "OSError: [Errno 98] address already in use"
            )
        with fake_services(self, self.champion, self.follow, levels) as urls:
            self.ports.update({lv: int(url.rsplit(":", 1)[1]) for lv, url in urls.items()})
            yield urls


def trained_lab(tmp_path: Path) -> FakeLab:
    """Every level trained once and in service; level 2 has v1 as its champion."""
    lab = FakeLab(tmp_path / "lab")
    lab.train_level0()
    lab.train_level1()
    lab.hand_off_level1()
    lab.store.register()
    return lab


@contextmanager
def fake_services(
    lab: FakeLab,
    level2_serves: Callable[[], str | None],
    follow: bool = False,
    levels: tuple[str, ...] = ("level 0", "level 1", "level 2"),
) -> Iterator[dict[str, str]]:
    """The three services, in threads. Each answers /predict with level 0's pickled model (the
    same model everywhere), loaded once, or at every request if `follow`; levels 1 and 2 have
    /health, /ready and /model (level 1's card, level 2's `level2_serves()` with lineage) and
    refuse a request that is not a JSON object with a 422."""
    pickle_path = lab.root / "level0" / "model.pkl"
    card_path = lab.root / "level1" / "serving" / "card.json"
    # What each service loads as it starts (levels 1 and 2 answer with level 0's model, which
    # the demo may still be writing as they start: it is read at their first request).
    loaded = {"level 1": card_path.read_text()} if "level 1" in levels else {}
    if "level 0" in levels:
        loaded["level 0"] = pickle.loads(pickle_path.read_bytes())

    def answer() -> dict:
        if follow or "level 0" not in loaded:
            loaded.setdefault("level 0", pickle.loads(pickle_path.read_bytes()))
        model = pickle.loads(pickle_path.read_bytes()) if follow else loaded["level 0"]
        probabilities = dict(zip(CLASSES, model.predict_proba([None])[0], strict=True))
        return {
            "species": max(probabilities, key=probabilities.get),
            "probabilities": probabilities,
        }

    def card() -> dict:
        return json.loads(card_path.read_text() if follow else loaded["level 1"])

    apps = {level: FastAPI() for level in ("level 0", "level 1", "level 2")}

    apps["level 0"].post("/predict")(answer)  # whatever it is sent, like level 0's server

    for level in ("level 1", "level 2"):
        apps[level].get("/health")(lambda: {"status": "ok"})

    def predict_and_version(penguin: dict) -> dict:  # anything but a JSON object is a 422
        return answer() | {"model_version": card()["version"]}

    apps["level 1"].post("/predict")(predict_and_version)

    def predict_and_log(penguin: dict, x_caller_id: str = Header("")) -> dict:
        """Level 2: every answer has an id and a version; a canary answers its share of
        callers (always Chinstrap)."""
        given, version = answer(), level2_serves()
        canary = lab.store.challenger
        if canary and answers_caller(canary[0], canary[1], x_caller_id.encode()):
            given = {
                "species": "Chinstrap",
                "probabilities": dict(zip(CLASSES, (0, 1, 0), strict=True)),
            }
            version = canary[0]
        prediction_id = uuid.uuid4().hex
        lab.answered_by[prediction_id] = (version, given["species"])
        return given | {"prediction_id": prediction_id, "model_version": version}

    def feedback(body: dict, authorization: str = Header("")) -> dict:
        if authorization != "Bearer fake-token":
            raise HTTPException(401)
        lab.feedback[body["prediction_id"]] = body["species"]
        return body

    def metrics() -> PlainTextResponse:
        right = sum(species == "Adelie" for species in lab.feedback.values())  # as answer()
        version = level2_serves()
        return PlainTextResponse(
            f'penguins_live_accuracy{{model_version="{version}"}} '
            f"{right / max(1, len(lab.feedback))}\n"
            f'penguins_feedback_labelled{{model_version="{version}"}} {len(lab.feedback)}\n'
        )

    apps["level 2"].post("/predict")(predict_and_log)
    apps["level 2"].post("/feedback")(feedback)
    apps["level 2"].get("/metrics")(metrics)

    apps["level 1"].get("/ready")(lambda: {"status": "ready"})
    apps["level 1"].get("/model")(card)
    apps["level 2"].get("/ready")(lambda: {"status": "ready", "model_version": level2_serves()})
    apps["level 2"].get("/model")(
        lambda: {"version": level2_serves(), "run_id": "r", "batch_id": "b", "data_checksum": "d"}
    )

    servers, threads = {}, []
    for level in levels:
        servers[level] = uvicorn.Server(
            uvicorn.Config(apps[level], host="127.0.0.1", port=free_port(), log_level="warning")
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
