"""`make scorecard`: the same probes against every level, and what each one measured.

    python -m shared.scorecard [--quick]

Each level is trained and served as its own README says, in a lab folder of its own
(state/scorecard/), then probed: same model, reproducibility, bad requests, endpoints, what the
service knows, the record of training, a corrupted batch, a worse model, new data, rollback,
tests, latency. Every cell is an observation from this run. The table is printed, and written
as Markdown and as an HTML report with a chart under state/scorecard/.
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
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import mlflow.sklearn
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from shared.contract import EXAMPLE_PAYLOAD, INVALID_EXAMPLES
from shared.lab import MODEL_NAME, Lab, held_out_rows
from shared.loadgen import run_load
from shared.paths import state_dir
from shared.simulate import Corruption, simulate_batch

LEVELS = ("level 0", "level 1", "level 2")
JSON = {"content-type": "application/json"}
LOAD_SECONDS = 3.0


@dataclass
class Cell:
    ok: bool | None  # True: the level has it; False: the gap; None: a neutral figure
    text: str

    def __str__(self) -> str:
        return {True: "✓ ", False: "✗ ", None: ""}[self.ok] + self.text


Row = tuple[str, dict[str, Cell]]


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
    present = [p for p in ("/health", "/ready", "/model") if get(p) == 200]
    return Cell(len(present) == 3, " ".join(present) if present else "none (404)")


def probe_knowledge(get_json: Callable[[str], tuple[int, dict]]) -> Cell:
    status, body = get_json("/model")
    if status != 200:
        return Cell(False, f"nothing (GET /model: {status})")
    if {"run_id", "batch_id", "data_checksum"} <= set(body):
        return Cell(True, f"full lineage: v{body['version']}, run, commit, data, batch")
    if {"version", "data_checksum"} <= set(body):
        return Cell(None, f"a card: version {body['version']}, data checksum, metrics")
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
        return httpx.post(url + path, content=body, headers=JSON, timeout=10).status_code

    def get(path: str) -> int:
        return httpx.get(url + path, timeout=10).status_code

    def get_json(path: str) -> tuple[int, dict]:
        response = httpx.get(url + path, timeout=10)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {}

    return {"post": post, "get": get, "get_json": get_json}


def served_probabilities(url: str, rows: pd.DataFrame) -> np.ndarray:
    out = []
    for payload in rows.to_dict("records"):
        answer = httpx.post(f"{url}/predict", json=payload, timeout=10).json()["probabilities"]
        out.append([answer[c] for c in sorted(answer)])
    return np.array(out)


# ------------------------------------------------------------------------ the scorecard


class Scorecard:
    def __init__(self, lab: Lab, progress: Callable[[str], None]) -> None:
        self.lab, self.say = lab, progress
        self.rows: list[Row] = []
        self.latency: dict[str, dict[str, float]] = {}

    def add(self, capability: str, cells: dict[str, Cell]) -> None:
        self.rows.append((capability, cells))
        self.say(f"   {capability}: " + " | ".join(f"{lv} {c}" for lv, c in cells.items()))

    def train_everything(self) -> None:
        lab = self.lab
        self.say("training level 0 twice (the notebook, headless)")
        lab.train_level0("level0-first")
        lab.train_level0()
        self.say("training level 1 twice, then the hand-off")
        self.first_card = lab.train_level1()
        self.card = lab.train_level1()  # same folder, as a person reruns it
        lab.hand_off_level1()
        self.say("running the level 2 pipeline twice")
        for _ in range(2):
            lab.run_level2().check_returncode()

    def probe_services(self, urls: dict[str, str]) -> None:
        rows = held_out_rows()
        self.say(f"sending {len(rows)} held-out birds to every service")
        served = {level: served_probabilities(url, rows) for level, url in urls.items()}
        gaps = {lv: float(np.abs(served[lv] - served["level 1"]).max()) for lv in LEVELS}
        self.add(
            "same model (vs level 1, held-out birds)",
            {lv: Cell(d <= 1e-9, f"max Δp {d:.1e} on {len(rows)} birds") for lv, d in gaps.items()},
        )
        probes = {level: service_probes(url) for level, url in urls.items()}
        self.add(
            "bad requests (11 invalid payloads)",
            {lv: probe_bad_requests(p["post"]) for lv, p in probes.items()},
        )
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
        pickles = [self.lab.root / d / "model.pkl" for d in ("level0-first", "level0")]
        level0 = [pickle.loads(p.read_bytes()).predict_proba(frame) for p in pickles]
        self.lab.registry()  # points MLflow at the lab's level 2 store
        level2 = [
            mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{v}").predict_proba(frame)
            for v in ("1", "2")
        ]
        same_bytes = pickles[0].read_bytes() == pickles[1].read_bytes()
        d0 = float(np.abs(level0[0] - level0[1]).max())
        d2 = float(np.abs(level2[0] - level2[1]).max())
        same1 = self.first_card["fingerprint"] == self.card["fingerprint"]
        self.add(
            "reproducible training (two runs)",
            {
                "level 0": Cell(
                    None,
                    f"max Δp {d0:.0e}, {'same' if same_bytes else 'other'} "
                    "pickle bytes; nothing records how",
                ),
                "level 1": Cell(
                    same1, "same fingerprint on both cards" if same1 else "fingerprints differ"
                ),
                "level 2": Cell(d2 == 0.0, f"registry v1 and v2: max Δp {d2:.0e}"),
            },
        )

    def probe_records(self) -> None:
        client = self.lab.registry()
        runs = client.search_runs([client.get_experiment_by_name("penguins-level2").experiment_id])
        level0_records = sorted(p.name for p in (self.lab.root / "level0").glob("*.json"))
        level1_cards = self.lab.level1_cards()
        cards = len({c["version"] for c in level1_cards})
        first_gone = all(c["version"] != self.first_card["version"] for c in level1_cards)
        self.add(
            "experiment record of training",
            {
                "level 0": Cell(
                    False, f"none kept: {', '.join(level0_records)} overwritten per run"
                ),
                "level 1": Cell(
                    None,
                    f"{cards} card file: the first run's "
                    + ("overwritten" if first_gone else "kept"),
                ),
                "level 2": Cell(True, f"{len(runs)} MLflow runs, one per pipeline run"),
            },
        )

    def probe_bad_data(self) -> None:
        path = self.lab.root / "corrupted.csv"
        corruption = Corruption(
            out_of_range_rate={"body_mass_g": 0.3}, null_rate={"bill_length_mm": 0.3}
        )
        simulate_batch(300, seed=21, corruption=corruption).to_csv(path, index=False)
        self.say("a corrupted batch arrives (30% impossible masses, 30% missing bills)")
        level0 = self.lab.train_level0("level0-corrupted", new_batch=path)
        self.say(
            f"level 0: the notebook appends the batch and retrains; nothing looks at the "
            f"rows; held-out macro F1 {level0['macro_f1']:.3f}"
        )
        level1 = self.lab.train_level1(self.lab.root / "level1" / "corrupted", new_batch=path)
        self.say(
            f"level 1: `train --new-batch` trains on it and writes a card "
            f"(v{level1['version']}); tests guard code, not data"
        )
        before = self.lab.champion()
        result = self.lab.run_level2("--batch", str(path))
        failed = re.search(r"failed (\d+) of (\d+) expectations", result.stderr)
        blocked = result.returncode != 0 and failed and self.lab.champion() == before
        checks = [line.strip() for line in result.stderr.splitlines() if line.startswith("  - ")]
        self.say(
            f"level 2: validate fails {failed[1] if failed else '?'} expectations "
            f"({'; '.join(checks[:2])}); batch quarantined; champion stays v{before}"
        )
        self.add(
            "a corrupted training batch",
            {
                "level 0": Cell(False, f"trained silently (macro F1 {level0['macro_f1']:.3f})"),
                "level 1": Cell(
                    False, f"trained silently (macro F1 {level1['metrics']['macro_f1']:.3f})"
                ),
                "level 2": Cell(
                    bool(blocked),
                    f"blocked: {failed[1]} expectations failed, quarantined"
                    if blocked
                    else "NOT blocked",
                ),
            },
        )

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
        level0 = self.lab.train_level0("level0-worse", new_batch=path)
        self.say(
            f"level 0: the notebook prints macro F1 {level0['macro_f1']:.3f}; whether "
            "anyone reads it before copying the pickle is up to them"
        )
        level1 = self.lab.train_level1(self.lab.root / "level1" / "worse", new_batch=path)
        self.say(
            f"level 1: the card says macro F1 {level1['metrics']['macro_f1']:.3f}; the "
            "hand-off copies it all the same"
        )
        before = self.lab.champion()
        self.lab.run_level2("--batch", str(path))
        newest = max(
            int(v.version)
            for v in self.lab.registry().search_model_versions(f"name = '{MODEL_NAME}'")
        )
        tags = self.lab.registry().get_model_version(MODEL_NAME, str(newest)).tags
        blocked = tags.get("gate") == "rejected" and self.lab.champion() == before
        self.say(
            f"level 2: v{newest} is registered with gate={tags.get('gate')} "
            f"({tags.get('gate_reasons', '?')}); champion v{self.lab.champion()}"
        )
        self.add(
            "a worse model",
            {
                "level 0": Cell(False, f"nothing stops it (macro F1 {level0['macro_f1']:.3f})"),
                "level 1": Cell(
                    False,
                    f"nothing stops it (macro F1 "
                    f"{level1['metrics']['macro_f1']:.3f}); hand-off is manual",
                ),
                "level 2": Cell(
                    blocked,
                    "blocked by the gate: " + tags.get("gate_reasons", "?").split("; ")[0]
                    if blocked
                    else "PROMOTED: served as the champion",
                ),
            },
        )

    def probe_new_data_and_rollback(self, urls: dict[str, str]) -> None:
        self.say("new data arrives: retrain each level")
        new_birds = self.lab.root / "new_birds.csv"
        simulate_batch(200, seed=23).to_csv(new_birds, index=False)
        before0 = httpx.post(f"{urls['level 0']}/predict", json=EXAMPLE_PAYLOAD).json()
        self.lab.train_level0(new_batch=new_birds)  # a new pickle, from more birds
        same0 = httpx.post(f"{urls['level 0']}/predict", json=EXAMPLE_PAYLOAD).json() == before0
        version_before = httpx.get(f"{urls['level 1']}/model").json()["version"]
        self.lab.train_level1()
        self.lab.hand_off_level1()
        still = httpx.get(f"{urls['level 1']}/model").json()["version"] == version_before
        start = time.perf_counter()
        self.lab.run_level2("--batch", str(new_birds)).check_returncode()
        champion = self.lab.champion()
        while httpx.get(f"{urls['level 2']}/ready").json().get("model_version") != champion:
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        self.add(
            "new data arrives",
            {
                "level 0": Cell(
                    False,
                    "manual: rerun notebook, copy pickle, restart"
                    + (" (server still served the old pickle)" if same0 else ""),
                ),
                "level 1": Cell(
                    False,
                    "manual: train, hand off, restart"
                    + (" (service still served the old model)" if still else ""),
                ),
                "level 2": Cell(True, f"automatic: {seconds:.0f} s from batch to champion served"),
            },
        )
        self.say("the latest model must be withdrawn")
        kept0 = list((self.lab.root / "level0").glob("*.pkl"))
        kept1 = {card["version"] for card in self.lab.level1_cards()}
        start = time.perf_counter()
        result = self.lab.run("level2_pipelines.registry", "rollback", check=False)
        rolled = re.search(r"back to v(\d+)", result.stdout)
        while (
            rolled
            and httpx.get(f"{urls['level 2']}/ready").json().get("model_version") != rolled[1]
        ):
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        self.say(
            f"level 0: {len(kept0)} pickle on disk ({', '.join(p.name for p in kept0)}): "
            "the previous model was overwritten"
        )
        self.say(
            f"level 1: the artifacts and serving folders hold {sorted(kept1)}: the previous "
            "pair was overwritten by the last training and hand-off"
        )
        self.say(
            "level 2: `make level2-rollback` said: "
            + (result.stdout.splitlines()[0] if rolled else result.stderr.strip()[-120:])
            + f"; the service served it {seconds:.1f} s after the command started"
        )
        self.add(
            "rollback",
            {
                "level 0": Cell(False, f"impossible: {len(kept0)} pickle kept, the latest"),
                "level 1": Cell(
                    False,
                    f"manual copy: {len(kept1)} model on disk, no earlier one "
                    "unless someone kept it",
                ),
                "level 2": Cell(
                    bool(rolled),
                    f"one command, {seconds:.1f} s until served"
                    if rolled
                    else "failed: " + result.stderr[-80:],
                ),
            },
        )

    def probe_tests(self, quick: bool) -> None:
        cells = {"level 0": Cell(False, "0 tests")}
        for level, folder in (
            ("level 1", "level1_devops/tests"),
            ("level 2", "level2_pipelines/tests"),
        ):
            self.say(f"running {level}'s own tests")
            args = ["pytest", folder, "-q", "-p", "no:cacheprovider"]
            result = self.lab.run(*args, *(["--co"] if quick else []), check=False)
            counts = re.findall(r"(\d+) (passed|failed|errors?|tests? collected)", result.stdout)
            summary = ", ".join(f"{n} {w}" for n, w in counts) or "none found"
            passed = None if quick else result.returncode == 0  # --quick only counts them
            cells[level] = Cell(passed, summary)
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
