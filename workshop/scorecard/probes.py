"""The probes: how each capability is observed, and how an observation reads as a cell.

Functions that talk to a service take its URL (or the request functions `service_probes`
makes), with a timeout on every request and a deadline on every wait. Functions that read a
level's run take what the run left (its output, the registry before and after, files on
disk). Nothing here starts a level or decides what runs when: that is `run.py`.
"""

import json
import pickle
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np

from shared.contract import EXAMPLE_PAYLOAD, INVALID_EXAMPLES
from shared.loadgen import run_load
from workshop.scorecard.cells import LEVELS, Cell, last_words, not_measured, shown

if TYPE_CHECKING:
    import pandas as pd

JSON = {"content-type": "application/json"}
HTTP_TIMEOUT_S = 10.0
POLL_S = 0.2
# Close enough to call two answers the same model's: float noise, never a different model.
SAME_P = 1e-9

# ---------------------------------------------------------------- probes against services


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


def probe_latency(port: int, seconds: float) -> tuple[Cell, dict[str, float]]:
    result = run_load(
        port, "/predict", json.dumps(EXAMPLE_PAYLOAD).encode(), concurrency=8, seconds=seconds
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


def served_probabilities(url: str, rows: "pd.DataFrame") -> np.ndarray:
    """What a service answers for each row, as probabilities in class-name order."""
    out = []
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as client:
        for payload in rows.to_dict("records"):
            answer = client.post(f"{url}/predict", json=payload).json()["probabilities"]
            out.append([answer[c] for c in sorted(answer)])
    return np.array(out)


def same_model_cells(served: dict[str, np.ndarray], birds: int) -> dict[str, Cell]:
    """Each level's answers against level 1's, the reference, on the same birds."""
    cells = {}
    for level in LEVELS:
        gap = float(np.abs(served[level] - served["level 1"]).max())
        cells[level] = Cell(gap <= SAME_P, f"max Δp {gap:.1e} on {birds} birds")
    cells["level 1"] = Cell(None, f"the reference ({birds} birds)")
    return cells


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


# ------------------------------------------------------------ reading level 0 and level 1


def reproducibility_level0(first: bytes, second: bytes, rows: "pd.DataFrame", recorded) -> Cell:
    """Two notebook pickles compared on the same birds, and what metrics.json keeps."""
    answers = [pickle.loads(p).predict_proba(rows) for p in (first, second)]
    gap = float(np.abs(answers[0] - answers[1]).max())
    same = "same" if first == second else "other"
    kept = ", ".join(recorded)
    return Cell(None, f"max Δp {gap:.0e}, {same} pickle bytes; metrics.json records {kept} only")


def reproducibility_level1(first: dict, second: dict) -> Cell:
    same = first["fingerprint"] == second["fingerprint"]
    return Cell(same, "same fingerprint on both cards" if same else "fingerprints differ")


def records_level0(records: list[str]) -> Cell:
    left = ", ".join(records) or "none"
    return Cell(
        False if len(records) < 2 else None,
        f"2 notebook runs, {len(records)} record left: {left}",
    )


def records_level1(first: dict, cards: list[dict]) -> Cell:
    kept = {c["trained_at"] for c in cards}
    first_kept = first["trained_at"] in kept
    return Cell(
        None,
        f"2 training runs, {len(kept)} card on disk: the first run's "
        + ("kept" if first_kept else "overwritten"),
    )


def new_data_level0(url: str, old: bytes, new: bytes, waited: float, rows: "pd.DataFrame") -> Cell:
    """Which pickle the level 0 server answers with: its answers on the held-out birds
    against each pickle's own."""
    before, after = (pickle.loads(p).predict_proba(rows) for p in (old, new))
    if np.allclose(before, after, rtol=0, atol=SAME_P):
        return not_measured("the new pickle answers as the old one")
    try:
        served = served_probabilities(url, rows)
    except (httpx.HTTPError, ValueError, KeyError) as error:
        return not_measured(f"the server did not answer ({error!r})")
    if np.allclose(served, after, rtol=0, atol=SAME_P):
        return Cell(True, "the server answers with the new pickle")
    if np.allclose(served, before, rtol=0, atol=SAME_P):
        return Cell(False, f"the server still answers with the old pickle {waited:.0f} s later")
    return Cell(False, "the server answers with neither pickle")


def new_data_level1(url: str, old: str | None, new: str, waited: float) -> Cell:
    if new == old:
        return not_measured(f"retraining gave the same model ({new})")
    served = served_card(url)
    if served == new:
        return Cell(True, f"serves {new} after the hand-off")
    now = "still serves" if served == old else "serves"
    return Cell(False, f"handed off {new}; {now} {served} {waited:.0f} s later")


def rollback_level0(folder: Path, replaced: bytes) -> Cell:
    """Whether the pickle the new data replaced is still in level 0's folder."""
    if (folder / "model.pkl").read_bytes() == replaced:
        return not_measured("retraining wrote the same pickle")
    pickles = sorted(folder.glob("*.pkl"))
    kept = [p.name for p in pickles if p.read_bytes() == replaced]
    if kept:
        return Cell(None, f"kept on disk: the replaced pickle, as {kept[0]}")
    names = ", ".join(p.name for p in pickles)
    return Cell(False, f"the replaced pickle is gone: {len(pickles)} on disk ({names})")


def rollback_level1(folder: Path, replaced: str | None) -> Cell:
    """Whether a card of the model the hand-off replaced is anywhere in level 1's folders."""
    if json.loads((folder / "serving" / "card.json").read_text())["version"] == replaced:
        return not_measured(f"the hand-off did not replace {replaced}")
    cards = {p: json.loads(p.read_text())["version"] for p in folder.rglob("card.json")}
    kept = [p.parent.name for p, version in cards.items() if version == replaced]
    if kept:
        return Cell(None, f"kept on disk: {replaced}, in {kept[0]}/")
    return Cell(False, f"the replaced model {replaced} is gone: {len(cards)} cards, none of it")


def tests_cell(returncode: int, output: str, collect_only: bool) -> Cell:
    """pytest's own summary of a level's tests: counted (collect only) or run."""
    counts = re.findall(r"(\d+) (passed|failed|errors?|tests? collected)", output)
    if counts:
        passed = None if collect_only else returncode == 0  # counting says nothing of passing
        # pytest's short summary (-ra) names each test that failed: the first one is shown.
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
        which = f" (first: {failed[0].rsplit('::', 1)[-1]})" if failed else ""
        return Cell(passed, ", ".join(f"{n} {w}" for n, w in counts) + which)
    if returncode == 5:  # pytest's "no tests collected"
        return Cell(False, "none: pytest finds no tests")
    return not_measured(f"pytest exit {returncode} ({last_words(output)})")


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


def reproducibility_level2(versions: list[str], registry: dict) -> Cell:
    """The two runs' versions compared by the fingerprint tag level 2 gives each (the
    SHA-256 of the fitted numbers): no model file is loaded here."""
    if len(versions) != 2:
        return not_measured(f"the two runs registered {versions or 'nothing'}")
    a, b = versions
    prints = [registry[v].tags.get("fingerprint") for v in (a, b)]
    if None in prints:
        return not_measured(f"v{a} and v{b} do not both carry a fingerprint tag")
    same = prints[0] == prints[1]
    return Cell(
        same, f"registry v{a} and v{b}: " + ("same fingerprint" if same else "fingerprints differ")
    )


def records_level2(tracked_runs: int, pipeline_runs: int) -> Cell:
    text = f"{tracked_runs} MLflow runs for {pipeline_runs} pipeline runs"
    return Cell(tracked_runs >= pipeline_runs, text)


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


def new_data_level2(run: Level2Run) -> Cell | None:
    """Why the new batch's run gives no new champion to wait for; None when it does."""
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


# ------------------------------------------------------------------ drift in served traffic


def files_in(folder: Path) -> dict[Path, tuple[int, int]]:
    """Every file under `folder` with its size and modification time: what a level wrote."""
    if not folder.exists():
        return {}
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def ask_about(url: str, birds: "pd.DataFrame") -> tuple[int, list[str]]:
    """Send each bird to /predict as a request (an unknown sex left out): (answered, the
    prediction ids the answers carried)."""
    answered, ids = 0, []
    http = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S)
    for bird in birds.to_dict("records"):
        payload = {k: v for k, v in bird.items() if k in EXAMPLE_PAYLOAD and v == v}
        for _ in range(2):  # level 0's server drops a kept-alive connection after a 500
            try:
                response = http.post("/predict", json=payload)
                break
            except httpx.TransportError:
                http.close()
                http = httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S)
        else:
            continue
        answered += response.status_code == 200
        if response.status_code == 200 and "prediction_id" in response.json():
            ids.append(response.json()["prediction_id"])
    http.close()
    return answered, ids


def drift_unnoticed(url: str, folder: Path, birds: "pd.DataFrame") -> tuple[Cell, Cell]:
    """A level without a prediction log: what it shows after drifted traffic, and whether a
    confirmed species can be given back. Observed, not assumed: /metrics, /feedback and the
    files in its state folder."""
    before = files_in(folder)
    answered, _ = ask_about(url, birds)
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
        metrics = http.get("/metrics").status_code
        feedback = http.post("/feedback", json={"species": "Adelie"}).status_code
    after = files_in(folder)
    written = sorted(p.name for p, stamp in after.items() if before.get(p) != stamp)
    kept = f"{len(written)} files written" if written else "nothing written"
    return (
        Cell(
            False,
            f"not noticed: {answered} of {len(birds)} drifted requests answered; "
            f"GET /metrics {metrics}, {kept}",
        ),
        Cell(False, f"unknown: no way to give the true species back (POST /feedback {feedback})"),
    )


def live_accuracy(
    url: str, version: str, confirmed: int, wait_s: float
) -> tuple[float, float] | None:
    """(live accuracy, confirmed birds) of `version` from the service's /metrics, once it
    counts all `confirmed` birds (it re-reads its log every few seconds); None if it never
    does within `wait_s`."""
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", timeout=HTTP_TIMEOUT_S).text
        found = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("model_version") == version:
                    found[sample.name] = sample.value
        if found.get("penguins_feedback_labelled", 0) >= confirmed:
            return found["penguins_live_accuracy"], found["penguins_feedback_labelled"]
        time.sleep(POLL_S)
    return None
