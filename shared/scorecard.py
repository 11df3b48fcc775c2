"""`make scorecard`: the same probes against every level, and what each one measured.

    python -m shared.scorecard [--quick]

Each level is trained and served as its own README says, in a lab folder of its own
(state/scorecard/), then probed: same model, reproducibility, bad requests, endpoints, what the
service knows, the record of training, a corrupted batch, a worse model, new data, rollback,
tests, latency. Every cell is an observation from this run, or says "not measured" and why.
Every wait has a deadline and every request a timeout. The table is printed, and written as
Markdown and as an HTML report with a chart under state/scorecard/.
"""

import argparse
import base64
import html
import io
import json
import pickle
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.exceptions import MlflowException

from shared.contract import EXAMPLE_PAYLOAD, INVALID_EXAMPLES
from shared.lab import Lab, held_out_rows
from shared.loadgen import run_load
from shared.paths import state_dir
from shared.simulate import Corruption, simulate_batch

LEVELS = ("level 0", "level 1", "level 2")
JSON = {"content-type": "application/json"}
LOAD_SECONDS = 3.0
HTTP_TIMEOUT_S = 10.0
# Level 2's service polls the registry every 0.5 s in the lab and deploy asks it to reload at
# once; 30 s is far beyond both, so a model not served by then is not coming.
SERVE_WAIT_S = 30.0
POLL_S = 0.2
BAD_REQUESTS = f"bad requests ({len(INVALID_EXAMPLES)} invalid payloads)"


@dataclass
class Cell:
    ok: bool | None  # True: the level has it; False: the gap; None: a neutral figure
    text: str

    def __str__(self) -> str:
        return {True: "✓ ", False: "✗ ", None: ""}[self.ok] + self.text


Row = tuple[str, dict[str, Cell]]


def not_measured(reason: str) -> Cell:
    return Cell(None, f"not measured: {reason}")


def last_words(output: str, limit: int = 100) -> str:
    """What a failed command said last: its exception line if it raised, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[\w.]*(Error|Exception)\b", line)]
    line = (raised or lines or ["no output"])[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def attempt(step: Callable[[], Any]) -> tuple[Any, str]:
    """Run one of a level's commands: (its result, "") or (None, what it said as it failed)."""
    try:
        return step(), ""
    except subprocess.CalledProcessError as error:
        return None, last_words(error.stderr or error.stdout or "")


def shown(version: str | None) -> str:
    return f"v{version}" if version else "nothing"


# ---------------------------------------------------------------- probes against services


def probe_bad_requests(post: Callable[[str, bytes], int]) -> Cell:
    """Send every invalid example; a 4xx for each is the mature answer."""
    statuses = [post("/predict", example.body) for example in INVALID_EXAMPLES]
    refused = sum(400 <= s < 500 for s in statuses)
    others = Counter(s for s in statuses if not 400 <= s < 500)
    detail = ", ".join(f"{n}x {s}" for s, n in sorted(others.items()))
    text = f"{refused}/{len(statuses)} refused with 4xx" + (f" ({detail})" if detail else "")
    return Cell(refused == len(statuses), text)


def probe_endpoints(get: Callable[[str], int]) -> Cell:
    statuses = {p: get(p) for p in ("/health", "/ready", "/model")}
    present = [p for p, status in statuses.items() if status == 200]
    if not present:
        return Cell(False, f"none ({', '.join(sorted({str(s) for s in statuses.values()}))})")
    return Cell(len(present) == len(statuses), " ".join(present))


# What a /model answer can say about where the model came from, and how the cell names it.
PROVENANCE = {
    "run_id": "run",
    "git_commit": "commit",
    "data_checksum": "data checksum",
    "batch_id": "batch",
    "metrics": "metrics",
}


def probe_knowledge(get_json: Callable[[str], tuple[int, dict]]) -> Cell:
    status, body = get_json("/model")
    if status != 200:
        return Cell(False, f"nothing (GET /model: {status})")
    said = ", ".join(label for key, label in PROVENANCE.items() if body.get(key))
    if {"run_id", "batch_id", "data_checksum"} <= set(body):
        return Cell(True, f"full lineage: v{body.get('version')}, {said}")
    if {"version", "data_checksum"} <= set(body):
        return Cell(None, f"a card: version {body['version']}, {said}")
    return Cell(False, "something, without provenance")


def probe_latency(port: int) -> tuple[Cell, dict[str, float]]:
    result = run_load(
        port, "/predict", json.dumps(EXAMPLE_PAYLOAD).encode(), concurrency=8, seconds=LOAD_SECONDS
    )
    figures = {
        "p50_ms": result.percentile_ms(0.5),
        "p99_ms": result.percentile_ms(0.99),
        "requests_per_s": result.throughput,
    }
    text = (
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"{figures['requests_per_s']:,.0f} req/s"
    )
    return Cell(None, text), figures


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


def served_probabilities(url: str, rows: pd.DataFrame) -> np.ndarray:
    out = []
    for payload in rows.to_dict("records"):
        response = httpx.post(f"{url}/predict", json=payload, timeout=HTTP_TIMEOUT_S)
        answer = response.json()["probabilities"]
        out.append([answer[c] for c in sorted(answer)])
    return np.array(out)


# ------------------------------------------------------------------- level 2's pipeline runs


@dataclass
class Level2Run:
    """One run of the level 2 pipeline, and what it changed in the registry."""

    result: subprocess.CompletedProcess | None = None
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


def corrupted_batch_cell(run: Level2Run) -> Cell:
    """✓ only on validation's own evidence: the run stopped naming the failed expectations, the
    batch is in quarantine with them, and nothing was registered or promoted."""
    if run.store_error:
        return not_measured(f"the registry could not be read ({run.store_error})")
    if run.registered:
        return Cell(False, f"NOT blocked: v{run.version} registered from it")
    if run.result.returncode == 0:
        return not_measured(f"the run neither refused nor registered it ({run.said})")
    refused = re.search(
        r"failed (\d+) of (\d+) expectations and was quarantined in (.+):$",
        run.result.stderr,
        re.MULTILINE,
    )
    if refused is None:
        return not_measured(f"the run failed without a validation verdict ({run.failure})")
    if not Path(refused[3], "failed_expectations.txt").is_file():
        return not_measured(f"validation refused it, but nothing is in quarantine at {refused[3]}")
    if run.champion_after != run.champion_before:
        return Cell(False, f"refused, yet the champion moved to {shown(run.champion_after)}")
    return Cell(
        True, f"blocked: {refused[1]} of {refused[2]} expectations failed, batch quarantined"
    )


def worse_model_cell(run: Level2Run) -> Cell:
    """✓ only when this run registered a version the gate rejected and the champion stayed."""
    if run.store_error:
        return not_measured(f"the registry could not be read ({run.store_error})")
    if run.result.returncode != 0:
        return not_measured(f"the run failed ({run.failure})")
    if not run.registered:
        return not_measured(f"the run registered nothing ({run.said})")
    if run.champion_after == run.version:
        return Cell(False, f"PROMOTED: v{run.version} is the champion")
    if run.tags.get("gate") == "rejected" and run.champion_after == run.champion_before:
        return Cell(True, f"blocked by the gate: {run.first_reason}")
    return not_measured(
        f"v{run.version} registered with gate={run.tags.get('gate')}, "
        f"champion {shown(run.champion_after)}"
    )


# ------------------------------------------------------------------------ the scorecard


class Scorecard:
    def __init__(self, lab: Lab, progress: Callable[[str], None]) -> None:
        self.lab, self.say = lab, progress
        self.rows: list[Row] = []
        self.latency: dict[str, dict[str, float]] = {}
        self.serve_wait_s = SERVE_WAIT_S

    def add(self, capability: str, cells: dict[str, Cell]) -> None:
        self.rows.append((capability, cells))
        self.say(f"   {capability}: " + " | ".join(f"{lv} {c}" for lv, c in cells.items()))

    # --- reading level 2 ---

    def run_level2(self, *args: str) -> Level2Run:
        """Run the pipeline, reading the registry before and after. The versions this run
        registered are the new ones whose MLflow run is the one the pipeline printed."""
        try:
            before, champion_before = self.lab.versions(), self.lab.champion()
            result = self.lab.run_level2(*args)
            printed = re.search(r"MLflow run (\w+)", result.stdout)
            after = self.lab.versions()
            registered = [
                after[v]
                for v in sorted(set(after) - set(before), key=int)
                if printed and after[v].run_id == printed[1]
            ]
            return Level2Run(result, champion_before, self.lab.champion(), registered)
        except (MlflowException, OSError) as error:
            return Level2Run(store_error=last_words(str(error)))

    def served_version(self, url: str) -> str | None:
        """The version level 2's service says it serves; None while it says none."""
        try:
            return httpx.get(f"{url}/ready", timeout=HTTP_TIMEOUT_S).json().get("model_version")
        except (httpx.HTTPError, ValueError):
            return None

    def wait_until_served(self, url: str, version: str) -> tuple[bool, str | None]:
        """Poll until the service serves `version` or `serve_wait_s` pass: (served, last seen)."""
        deadline = time.monotonic() + self.serve_wait_s
        while True:
            seen = self.served_version(url)
            if seen == version or time.monotonic() >= deadline:
                return seen == version, seen
            time.sleep(POLL_S)

    def not_served(self, version: str, seen: str | None, before: str | None) -> Cell:
        now = f"still {shown(seen)}" if seen == before else f"serving {shown(seen)}"
        return Cell(False, f"v{version} not served within {self.serve_wait_s:g} s ({now})")

    # --- the probes ---

    def train_everything(self) -> None:
        lab = self.lab
        self.say("training level 0 twice into its folder (the notebook, headless)")
        self.level0_pickles = []
        for _ in range(2):
            lab.train_level0()
            self.level0_pickles.append((lab.root / "level0" / "model.pkl").read_bytes())
        self.say("training level 1 twice, then the hand-off")
        self.first_card = lab.train_level1()
        self.card = lab.train_level1()  # same folder, as a person reruns it
        lab.hand_off_level1()
        self.say("running the level 2 pipeline twice on the same batch")
        self.level2_versions: list[str] = []
        self.level2_runs = 0
        for args in ((), ("--force",)):  # level 2 skips a batch it has trained, unless forced
            before = set(lab.versions())
            lab.run_level2(*args).check_returncode()
            self.level2_runs += 1
            self.level2_versions += sorted(set(lab.versions()) - before, key=int)

    def probe_services(self, urls: dict[str, str]) -> None:
        rows = held_out_rows()
        self.say(f"sending {len(rows)} held-out birds to every service")
        served = {level: served_probabilities(url, rows) for level, url in urls.items()}
        gaps = {lv: float(np.abs(served[lv] - served["level 1"]).max()) for lv in LEVELS}
        cells = {
            lv: Cell(d <= 1e-9, f"max Δp {d:.1e} on {len(rows)} birds") for lv, d in gaps.items()
        }
        cells["level 1"] = Cell(None, f"the reference ({len(rows)} birds)")
        self.add("same model (vs level 1, held-out birds)", cells)
        probes = {level: service_probes(url) for level, url in urls.items()}
        self.add(BAD_REQUESTS, {lv: probe_bad_requests(p["post"]) for lv, p in probes.items()})
        self.add(
            "health / ready / model endpoints",
            {lv: probe_endpoints(p["get"]) for lv, p in probes.items()},
        )
        self.add(
            "what the service knows about its model",
            {lv: probe_knowledge(p["get_json"]) for lv, p in probes.items()},
        )

    def probe_reproducibility(self) -> None:
        frame = held_out_rows()
        first, second = self.level0_pickles
        level0 = [pickle.loads(p).predict_proba(frame) for p in (first, second)]
        d0 = float(np.abs(level0[0] - level0[1]).max())
        recorded = json.loads((self.lab.root / "level0" / "metrics.json").read_text())
        same1 = self.first_card["fingerprint"] == self.card["fingerprint"]
        self.add(
            "reproducible training (two runs)",
            {
                "level 0": Cell(
                    None,
                    f"max Δp {d0:.0e}, {'same' if first == second else 'other'} pickle bytes; "
                    f"metrics.json records {', '.join(recorded)} only",
                ),
                "level 1": Cell(
                    same1, "same fingerprint on both cards" if same1 else "fingerprints differ"
                ),
                "level 2": self.level2_reproducibility(),
            },
        )

    def level2_reproducibility(self) -> Cell:
        """The two runs' versions compared by the fingerprint tag level 2 gives each (the
        SHA-256 of the fitted numbers): no model file is loaded here."""
        if len(self.level2_versions) != 2:
            return not_measured(f"the two runs registered {self.level2_versions or 'nothing'}")
        versions = self.lab.versions()
        a, b = self.level2_versions
        prints = [versions[v].tags.get("fingerprint") for v in (a, b)]
        if None in prints:
            return not_measured(f"v{a} and v{b} do not both carry a fingerprint tag")
        same = prints[0] == prints[1]
        return Cell(
            same,
            f"registry v{a} and v{b}: " + ("same fingerprint" if same else "fingerprints differ"),
        )

    def probe_records(self) -> None:
        level0 = sorted(p.name for p in (self.lab.root / "level0").glob("*.json"))
        cards = {c["trained_at"] for c in self.lab.level1_cards()}
        first_kept = self.first_card["trained_at"] in cards
        runs, pipeline_runs = self.lab.tracked_runs(), self.level2_runs
        self.add(
            "experiment record of training",
            {
                "level 0": Cell(
                    False if len(level0) < 2 else None,
                    f"2 notebook runs, {len(level0)} record left: {', '.join(level0) or 'none'}",
                ),
                "level 1": Cell(
                    None,
                    f"2 training runs, {len(cards)} card on disk: the first run's "
                    + ("kept" if first_kept else "overwritten"),
                ),
                "level 2": Cell(
                    runs >= pipeline_runs, f"{runs} MLflow runs for {pipeline_runs} pipeline runs"
                ),
            },
        )

    def probe_bad_data(self) -> None:
        path = self.lab.root / "corrupted.csv"
        corruption = Corruption(
            out_of_range_rate={"body_mass_g": 0.3}, null_rate={"bill_length_mm": 0.3}
        )
        simulate_batch(300, seed=21, corruption=corruption).to_csv(path, index=False)
        self.say("a corrupted batch arrives (30% impossible masses, 30% missing bills)")
        run = self.run_level2("--batch", str(path))
        stderr = run.result.stderr if run.result else ""
        failed = [line.strip()[2:] for line in stderr.splitlines() if line.startswith("  - ")]
        if failed:
            self.say(f"level 2 validation named: {'; '.join(failed[:2])}")
        self.add(
            "a corrupted training batch",
            {
                "level 0": self.corrupted_level0(path),
                "level 1": self.corrupted_level1(path),
                "level 2": corrupted_batch_cell(run),
            },
        )

    def corrupted_level0(self, batch: Path) -> Cell:
        metrics, why = attempt(lambda: self.lab.train_level0("level0-corrupted", new_batch=batch))
        if metrics is None:
            return not_measured(f"the notebook failed ({why})")
        return Cell(False, f"trained on it (macro F1 {metrics['macro_f1']:.3f})")

    def corrupted_level1(self, batch: Path) -> Cell:
        folder = self.lab.root / "level1" / "corrupted"
        card, why = attempt(lambda: self.lab.train_level1(folder, new_batch=batch))
        if card is None:
            return not_measured(f"training failed ({why})")
        f1 = card["metrics"]["macro_f1"]
        return Cell(False, f"trained on it: card {card['version']} (macro F1 {f1:.3f})")

    def probe_worse_model(self, shuffled_share: float = 1.0) -> None:
        """2,000 new birds, `shuffled_share` of them with their species shuffled."""
        path = self.lab.root / "shuffled.csv"
        batch = simulate_batch(2000, seed=22)
        rows = batch.sample(frac=shuffled_share, random_state=0).index
        batch.loc[rows, "species"] = (
            batch.loc[rows, "species"].sample(frac=1, random_state=1).to_numpy()
        )
        batch.to_csv(path, index=False)
        self.say(
            f"a worse model is trained (2,000 birds, {shuffled_share:.0%} with shuffled species)"
        )
        run = self.run_level2("--batch", str(path))
        if run.registered:
            self.say(f"level 2: v{run.version} gate={run.tags.get('gate')}: {run.first_reason}")
        self.add(
            "a worse model",
            {
                "level 0": self.worse_model_level0(path),
                "level 1": self.worse_model_level1(path),
                "level 2": worse_model_cell(run),
            },
        )

    def worse_model_level0(self, batch: Path) -> Cell:
        """Whether the notebook writes the worse model where a person picks it up."""
        metrics, why = attempt(lambda: self.lab.train_level0("level0-worse", new_batch=batch))
        if metrics is None:
            return not_measured(f"the notebook failed ({why})")
        if not (self.lab.root / "level0-worse" / "model.pkl").is_file():
            return not_measured("the notebook wrote no model.pkl")
        return Cell(False, f"notebook wrote model.pkl (macro F1 {metrics['macro_f1']:.3f})")

    def worse_model_level1(self, batch: Path) -> Cell:
        """Whether level 1's hand-off takes the worse model (into a folder nothing serves)."""
        trained, serving = (
            self.lab.root / "level1" / "worse",
            self.lab.root / "level1" / "worse-serving",
        )
        card, why = attempt(lambda: self.lab.train_level1(trained, new_batch=batch))
        if card is None:
            return not_measured(f"training failed ({why})")
        _, why = attempt(lambda: self.lab.hand_off_level1(trained, serving))
        if why:  # the hand-off checks that a pair loads, not how good it is
            return not_measured(f"the hand-off failed ({why})")
        handed = json.loads((serving / "card.json").read_text())["version"]
        if handed != card["version"]:
            return not_measured(f"the hand-off left {handed}, not {card['version']}")
        return Cell(
            False, f"hand-off took it: {handed} (macro F1 {card['metrics']['macro_f1']:.3f})"
        )

    def probe_new_data_and_rollback(self, urls: dict[str, str]) -> None:
        self.probe_rollback(urls, self.probe_new_data(urls))

    def probe_new_data(self, urls: dict[str, str]) -> dict[str, Any]:
        """Retrain every level on new birds, as its README says, then look at what each
        service serves. Returns what each level served before: the model a rollback restores."""
        self.say("new data arrives: retrain each level")
        new_birds = self.lab.root / "new_birds.csv"
        simulate_batch(200, seed=23).to_csv(new_birds, index=False)
        pickle_path = self.lab.root / "level0" / "model.pkl"
        replaced = {
            "level 0": pickle_path.read_bytes(),
            "level 1": self.served_card(urls["level 1"]),
            "level 2": self.served_version(urls["level 2"]),
        }
        self.lab.train_level0(new_batch=new_birds)  # into the folder its server reads from
        card = self.lab.train_level1(new_batch=new_birds)
        self.lab.hand_off_level1()
        handed_off = time.perf_counter()
        level2 = self.new_data_level2(urls["level 2"], new_birds, replaced["level 2"])
        # Checked only now, after level 2's run: levels 0 and 1 had as long to follow.
        waited = time.perf_counter() - handed_off
        self.add(
            "new data arrives",
            {
                "level 0": self.new_data_level0(
                    urls["level 0"], replaced["level 0"], pickle_path.read_bytes(), waited
                ),
                "level 1": self.new_data_level1(
                    urls["level 1"], replaced["level 1"], card["version"], waited
                ),
                "level 2": level2,
            },
        )
        return replaced

    def served_card(self, url: str) -> str | None:
        """The version of the card level 1's service serves; None if it does not say."""
        try:
            return httpx.get(f"{url}/model", timeout=HTTP_TIMEOUT_S).json().get("version")
        except (httpx.HTTPError, ValueError):
            return None

    def new_data_level0(self, url: str, old: bytes, new: bytes, waited: float) -> Cell:
        """Which pickle the level 0 server answers with: its answers on the held-out birds
        against each pickle's own."""
        rows = held_out_rows()
        before, after = (pickle.loads(p).predict_proba(rows) for p in (old, new))
        if np.allclose(before, after, rtol=0, atol=1e-9):
            return not_measured("the new pickle answers as the old one")
        try:
            served = served_probabilities(url, rows)
        except (httpx.HTTPError, ValueError, KeyError) as error:
            return not_measured(f"the server did not answer ({error!r})")
        if np.allclose(served, after, rtol=0, atol=1e-9):
            return Cell(True, "the server answers with the new pickle")
        if np.allclose(served, before, rtol=0, atol=1e-9):
            return Cell(False, f"the server still answers with the old pickle {waited:.0f} s later")
        return Cell(False, "the server answers with neither pickle")

    def new_data_level1(self, url: str, old: str | None, new: str, waited: float) -> Cell:
        if new == old:
            return not_measured(f"retraining gave the same model ({new})")
        served = self.served_card(url)
        if served == new:
            return Cell(True, f"serves {new} after the hand-off")
        now = "still serves" if served == old else "serves"
        return Cell(False, f"handed off {new}; {now} {served} {waited:.0f} s later")

    def new_data_level2(self, url: str, batch: Path, before: str | None) -> Cell:
        """✓ only if the service comes to serve a version this batch's run registered and
        promoted, other than the one it served before, within `serve_wait_s`."""
        start = time.perf_counter()
        run = self.run_level2("--batch", str(batch))
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
        served, seen = self.wait_until_served(url, run.version)
        if not served:
            return self.not_served(run.version, seen, before)
        seconds = time.perf_counter() - start
        return Cell(
            True,
            f"automatic: {seconds:.0f} s from batch to v{run.version} served (was {shown(before)})",
        )

    def probe_rollback(self, urls: dict[str, str], replaced: dict[str, Any]) -> None:
        self.say("the latest model must be withdrawn")
        self.add(
            "rollback",
            {
                "level 0": self.rollback_level0(replaced["level 0"]),
                "level 1": self.rollback_level1(replaced["level 1"]),
                "level 2": self.rollback_level2(urls["level 2"]),
            },
        )

    def rollback_level0(self, replaced: bytes) -> Cell:
        """Whether the pickle the new data replaced is still in level 0's folder."""
        folder = self.lab.root / "level0"
        if (folder / "model.pkl").read_bytes() == replaced:
            return not_measured("retraining wrote the same pickle")
        pickles = sorted(folder.glob("*.pkl"))
        kept = [p.name for p in pickles if p.read_bytes() == replaced]
        if kept:
            return Cell(None, f"kept on disk: the replaced pickle, as {kept[0]}")
        names = ", ".join(p.name for p in pickles)
        return Cell(False, f"the replaced pickle is gone: {len(pickles)} on disk ({names})")

    def rollback_level1(self, replaced: str | None) -> Cell:
        """Whether a card of the model the hand-off replaced is anywhere in level 1's folders."""
        folder = self.lab.root / "level1"
        if json.loads((folder / "serving" / "card.json").read_text())["version"] == replaced:
            return not_measured(f"the hand-off did not replace {replaced}")
        cards = {p: json.loads(p.read_text())["version"] for p in folder.rglob("card.json")}
        kept = [p.parent.name for p, version in cards.items() if version == replaced]
        if kept:
            return Cell(None, f"kept on disk: {replaced}, in {kept[0]}/")
        return Cell(False, f"the replaced model {replaced} is gone: {len(cards)} cards, none of it")

    def rollback_level2(self, url: str) -> Cell:
        start = time.perf_counter()
        result = self.lab.run("level2_pipelines.registry", "rollback", check=False)
        moved = re.search(r"from v(\d+) back to v(\d+)", result.stdout)
        if moved is None:
            return Cell(False, f"failed: {last_words(result.stderr or result.stdout)}")
        self.say(f"level 2: `make level2-rollback` said: {moved[0]}")
        served, seen = self.wait_until_served(url, moved[2])
        if not served:
            return self.not_served(moved[2], seen, moved[1])
        seconds = time.perf_counter() - start
        return Cell(True, f"one command: v{moved[1]} to v{moved[2]}, served after {seconds:.1f} s")

    def probe_tests(self, quick: bool) -> None:
        cells = {}
        folders = ("level0_notebook", "level1_devops/tests", "level2_pipelines/tests")
        for level, folder in zip(LEVELS, folders, strict=True):
            self.say(f"{'collecting' if quick else 'running'} {level}'s own tests ({folder})")
            args = ["pytest", folder, "-q", "-p", "no:cacheprovider"]
            result = self.lab.run(*args, *(["--co"] if quick else []), check=False)
            counts = re.findall(r"(\d+) (passed|failed|errors?|tests? collected)", result.stdout)
            if counts:
                passed = None if quick else result.returncode == 0  # --quick only counts them
                cells[level] = Cell(passed, ", ".join(f"{n} {w}" for n, w in counts))
            elif result.returncode == 5:  # pytest's "no tests collected"
                cells[level] = Cell(False, "none: pytest finds no tests")
            else:
                cells[level] = not_measured(
                    f"pytest exit {result.returncode} ({last_words(result.stdout + result.stderr)})"
                )
        self.add("tests that guard the level", cells)

    def probe_latencies(self) -> None:
        cells = {}
        for level in LEVELS:
            cells[level], self.latency[level] = probe_latency(self.lab.ports[level])
        self.add("serving at c=8 (3 s each)", cells)


# ----------------------------------------------------------------------------- reports


def markdown(rows: list[Row], when: str) -> str:
    lines = [
        f"Scorecard, {when}",
        "",
        "| capability | " + " | ".join(LEVELS) + " |",
        "|---|" + "---|" * len(LEVELS),
    ]
    for capability, cells in rows:
        texts = [str(cells[lv]).replace("|", "\\|") for lv in LEVELS]  # a pipe ends a cell
        lines.append(f"| {capability} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def chart_png(latency: dict[str, dict[str, float]]) -> bytes:
    figure = Figure(figsize=(9, 3.4))
    left, right = figure.subplots(1, 2)
    levels = list(latency)
    x = np.arange(len(levels))
    left.bar(x - 0.2, [latency[lv]["p50_ms"] for lv in levels], 0.4, label="p50")
    left.bar(x + 0.2, [latency[lv]["p99_ms"] for lv in levels], 0.4, label="p99")
    left.set(xticks=x, xticklabels=levels, ylabel="ms", title="Latency at c=8")
    left.legend()
    right.bar(x, [latency[lv]["requests_per_s"] for lv in levels], color="tab:green")
    right.set(xticks=x, xticklabels=levels, ylabel="requests/s", title="Throughput at c=8")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def html_report(rows: list[Row], latency: dict, when: str) -> str:
    def cell(c: Cell) -> str:
        colour = {True: "#e6f4ea", False: "#fce8e6", None: "#f5f5f5"}[c.ok]
        return f'<td style="background:{colour}">{html.escape(str(c))}</td>'

    body = "".join(
        f"<tr><th>{html.escape(cap)}</th>" + "".join(cell(cells[lv]) for lv in LEVELS) + "</tr>"
        for cap, cells in rows
    )
    chart = base64.b64encode(chart_png(latency)).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>MLOps scorecard</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{border:1px solid #ccc;padding:.4em;
text-align:left;vertical-align:top}}table{{border-collapse:collapse}}</style></head><body>
<h1>What each level buys you</h1><p>Measured {html.escape(when)}.</p>
<table><tr><th>capability</th>{"".join(f"<th>{lv}</th>" for lv in LEVELS)}</tr>{body}</table>
<h2>Serving</h2><img alt="latency and throughput per level" src="data:image/png;base64,{chart}">
</body></html>"""


def failed_step(error: subprocess.CalledProcessError) -> str:
    """One readable paragraph for a level's command that failed: which, and its last words."""
    command = " ".join(str(a) for a in error.cmd[1:])
    tail = "\n".join((error.stderr or error.stdout or "").strip().splitlines()[-8:])
    return f"a level's command failed: python {command}\n{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description="Probe every level and print the scorecard.")
    parser.add_argument("--quick", action="store_true", help="count tests instead of running")
    args = parser.parse_args()
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:5.0f} s] {message}", flush=True)

    out = state_dir() / "scorecard"
    card = Scorecard(Lab(out / "lab"), say)
    try:
        card.train_everything()
        with card.lab.services() as urls:
            say("services up: " + ", ".join(f"{lv} {u}" for lv, u in urls.items()))
            card.probe_services(urls)
            card.probe_latencies()
            card.probe_reproducibility()
            card.probe_records()
            card.probe_bad_data()
            card.probe_worse_model()
            card.probe_new_data_and_rollback(urls)
        card.probe_tests(args.quick)
    except subprocess.CalledProcessError as error:
        sys.exit(f"scorecard: {failed_step(error)}")
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {time.perf_counter() - started:.0f} s"
    text = markdown(card.rows, when)
    (out / "scorecard.md").write_text(text)
    record = {
        "when": when,
        "rows": [
            {"capability": c, **{lv: vars(cells[lv]) for lv in LEVELS}} for c, cells in card.rows
        ],
        "latency": card.latency,
    }
    (out / "scorecard.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "scorecard.html").write_text(html_report(card.rows, card.latency, when))
    print("\n" + text)
    print(f"written: {out / 'scorecard.md'}, scorecard.html and scorecard.json")


if __name__ == "__main__":
    main()
