"""The world moves: a window of birds with bills one standard deviation longer than any model
learned is asked about at every service, and biologists confirm their species. Which level
notices (drift), which knows how its model does on them (live accuracy), and which learns the
new world (level 2's monitor asks for a retraining on the confirmed birds)."""

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from shared.contract import EXAMPLE_PAYLOAD
from workshop.scorecard.cells import DRIFT, LEVELS, LIVE_ACCURACY, Cell, Row, last_words
from workshop.scorecard.probes import (
    HTTP_TIMEOUT_S,
    POLL_S,
    no_new_champion,
    not_served,
    run_level2,
    served_version,
    wait_until_served,
)
from workshop.scorecard.table import Scorecard, side_by_side

if TYPE_CHECKING:
    import pandas as pd


def drifted_birds(window: int) -> "pd.DataFrame":
    """`window` birds whose bills are one standard deviation (of the real birds) longer."""
    from shared.data import load_penguins
    from shared.simulate import Drift, simulate_batch

    shift = float(load_penguins()["bill_length_mm"].std())
    drift = Drift(mean_shift={"bill_length_mm": shift})
    return simulate_batch(window, seed=31, drift=drift)


def observe(card: Scorecard, urls: dict[str, str]) -> tuple[Row, Row]:
    """Two rows: drift in served traffic, and live accuracy known."""
    birds = drifted_birds(card.drift_window)
    card.say(
        f"the world moves: {len(birds)} birds with bills 1 sd longer are asked about at "
        "every service, and biologists confirm their species"
    )

    def unnoticed(level: str) -> Callable[[], tuple[Cell, Cell]]:
        folder = card.lab.root / level.replace(" ", "")  # e.g. level0/
        return lambda: drift_unnoticed(urls[level], folder, birds)

    done = side_by_side(
        {
            "level 0": unnoticed("level 0"),
            "level 1": unnoticed("level 1"),
            "level 2": lambda: level2(card, urls["level 2"], birds),
        }
    )
    return (
        (DRIFT, {level: done[level][0] for level in LEVELS}),
        (LIVE_ACCURACY, {level: done[level][1] for level in LEVELS}),
    )


def level2(card: Scorecard, url: str, birds: "pd.DataFrame") -> tuple[Cell, Cell]:
    """The drifted traffic and its confirmed species, then the monitor on demand and the
    retraining its verdict asks for (the run the on-drift deployment starts): seconds from
    the traffic's start to detection, and to the new champion served."""
    start = time.perf_counter()
    before = served_version(url)
    answered, ids = ask_about(url, birds)
    token = (card.lab.root / "level2" / "admin_token").read_text().strip()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        confirmed = sum(
            http.post("/feedback", json={"prediction_id": i, "species": s}).status_code == 200
            for i, s in zip(ids, birds["species"], strict=False)
        )
    known = live_accuracy(url, str(before), confirmed, card.serve_wait_s)
    accuracy = (
        Cell(True, f"{known[0]:.2f} for v{before} on {known[1]:.0f} confirmed birds (/metrics)")
        if known
        else Cell(False, f"/metrics shows none for v{before} after {confirmed} confirmations")
    )
    monitor = card.lab.run("level2_pipelines.monitor", check=False)
    verdict = re.search(r"level 2 monitor: (\S+): (.*)", monitor.stdout)
    run_id = re.search(r"MLflow run (\w+)", monitor.stdout)
    if verdict is None or verdict[1] != "asked" or run_id is None:
        said = verdict[0] if verdict else last_words(monitor.stderr or monitor.stdout)
        return Cell(False, f"not detected: {said}"), accuracy
    detected = time.perf_counter() - start
    card.say(f"level 2: the monitor {verdict[2].split(';')[0]} ({detected:.0f} s)")
    run = run_level2(card.lab, "--drift-run-id", run_id[1])
    refused = no_new_champion(run)
    if refused is not None:
        failed = f"detected in {detected:.0f} s; retraining: {refused.text}"
        return Cell(False, failed), accuracy
    served, seen = wait_until_served(url, run.version, card.serve_wait_s)
    if not served:
        return not_served(run.version, seen, before, card.serve_wait_s), accuracy
    seconds = time.perf_counter() - start
    return (
        Cell(
            True,
            f"detected {detected:.0f} s after the traffic began ({answered} answers); "
            f"v{run.version}, trained on {confirmed} confirmed birds, served at "
            f"{seconds:.0f} s",
        ),
        accuracy,
    )


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
