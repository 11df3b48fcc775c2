"""A new model meets live traffic (the canary drill): the worse model of `worse_model.py`
(trained on birds whose species were shuffled) is put in front of callers the way each level
puts a model there. Levels 0 and 1 hand it over whole: their servers, started after the
hand-off, answer every caller with it. Level 2's gate refuses it; a person who overrides the
gate can still only try it on a share of callers (a canary, sticky per caller), and the judge
withdraws it on those callers' confirmed birds, before anyone else meets it.

Observed, not assumed: each service is asked about the same birds, one caller each, and every
answer is matched to the model that gave it (level 0 by its probabilities, levels 1 and 2 by the
version the answer names); level 2's verdict is its judge's, on the feedback it was given."""

import pickle
import time
from pathlib import Path

import httpx
import numpy as np

from level2_pipelines.rollout import CALLER_HEADER, answers_caller
from shared.contract import EXAMPLE_PAYLOAD
from workshop.scorecard.cells import CANARY, Cell, Row, not_measured
from workshop.scorecard.probes import HTTP_TIMEOUT_S, POLL_S, SAME_P, run_level2
from workshop.scorecard.scenarios import worse_model
from workshop.scorecard.table import Scorecard, side_by_side

CALLERS = 200  # one bird each: enough for the judge's 30 confirmed birds on each model
SHARE = 0.25


def callers() -> list[dict]:
    """The birds callers ask about, one per caller (complete rows: level 0 answers no other)."""
    from shared.simulate import simulate_batch

    birds = simulate_batch(CALLERS, seed=41).dropna()
    return [
        {**{k: b[k] for k in EXAMPLE_PAYLOAD}, "species": b["species"]} for _, b in birds.iterrows()
    ]


def ask(url: str, birds: list[dict], first: int = 0) -> list[dict]:
    """Each bird asked by its own caller (the `X-Caller-Id` header; callers numbered from
    `first`): the answers, in order ({} where the service did not answer 200)."""
    answers = []
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_S) as http:
        for i, bird in enumerate(birds, start=first):
            payload = {k: bird[k] for k in EXAMPLE_PAYLOAD}
            response = http.post("/predict", json=payload, headers={CALLER_HEADER: caller(i)})
            answers.append(response.json() if response.status_code == 200 else {})
    return answers


def caller(i: int) -> str:
    return f"caller-{i}"


def right(answers: list[dict], birds: list[dict], met: list[bool]) -> str:
    """How many of the callers who met the new model got the right species."""
    pairs = zip(answers, birds, met, strict=True)
    hits = sum(a.get("species") == b["species"] for a, b, m in pairs if m)
    return f"{hits} of {sum(met)} right"


def observe(card: Scorecard) -> Row:
    lab, path, birds = card.lab, worse_model.batch(card.lab), callers()
    card.say(
        "a worse model (2,000 birds, their species shuffled) goes in front of callers the way "
        f"each level puts a model there; then {len(birds)} callers ask about one bird each"
    )
    new_pickle: dict[str, bytes] = {}

    def level0() -> None:  # into the folder its server reads from, as a person copies it
        lab.train_level0(new_batch=path)
        new_pickle["level 0"] = (lab.root / "level0" / "model.pkl").read_bytes()

    def level1() -> str:
        version = lab.train_level1(new_batch=path)["version"]
        lab.hand_off_level1()
        return version

    handed = side_by_side(
        {"level 0": level0, "level 1": level1, "level 2": lambda: trial(card, path)}
    )
    with lab.services() as urls:
        cells = side_by_side(
            {
                "level 0": lambda: level0_cell(urls["level 0"], birds, new_pickle["level 0"]),
                "level 1": lambda: level1_cell(urls["level 1"], birds, handed["level 1"]),
                "level 2": lambda: level2_cell(card, urls["level 2"], birds, handed["level 2"]),
            }
        )
    return CANARY, cells


def trial(card: Scorecard, path: Path) -> str | Cell:
    """Level 2 trains on the batch as usual; the gate refuses the model; a person rolls it out
    as a canary anyway. The version on trial, or the cell saying why there is none."""
    run = run_level2(card.lab, "--batch", str(path))
    if run.store_error or run.result.returncode != 0 or not run.registered:
        return worse_model.worse_model_cell(run)
    if run.champion_after == run.version:  # the gate let it through: no trial to show
        return worse_model.worse_model_cell(run)
    card.say(f"level 2: v{run.version} gate={run.tags.get('gate')}: {run.first_reason}")
    card.say(
        f"level 2: a person overrides the gate and tries v{run.version} on {SHARE:.0%} of "
        f"callers (make level2-rollout MODE=canary SHARE={SHARE} VERSION={run.version})"
    )
    started = card.lab.run(
        "level2_pipelines.rollout",
        "start",
        "canary",
        "--share",
        str(SHARE),
        "--version",
        run.version,
    )
    card.say(started.stdout.strip())
    return run.version


def level0_cell(url: str, birds: list[dict], new: bytes) -> Cell:
    """Which callers the new pickle answered: the server's probabilities against its own."""
    import pandas as pd

    model = pickle.loads(new)  # level 0's own model file, in the lab: level 0 knows no other
    answers = ask(url, birds)
    met = [
        bool(a)
        and np.allclose(
            [a["probabilities"][c] for c in model.classes_],
            model.predict_proba(pd.DataFrame([{k: b[k] for k in EXAMPLE_PAYLOAD}]))[0],
            rtol=0,
            atol=SAME_P,
        )
        for a, b in zip(answers, birds, strict=True)
    ]
    return exposed("the new pickle", answers, birds, met)


def level1_cell(url: str, birds: list[dict], version: str) -> Cell:
    answers = ask(url, birds)
    return exposed(version, answers, birds, [a.get("model_version") == version for a in answers])


def exposed(what: str, answers: list[dict], birds: list[dict], met: list[bool]) -> Cell:
    if not any(answers):
        return not_measured("the service answered no caller")
    return Cell(
        False,
        f"no trial: {sum(met)} of {len(birds)} callers answered by {what} "
        f"({right(answers, birds, met)})",
    )


def level2_cell(card: Scorecard, url: str, birds: list[dict], version: str | Cell) -> Cell:
    """The canary's callers, their feedback, the judge's verdict, and who meets it after."""
    if isinstance(version, Cell):
        return version
    first = next(i for i in range(len(birds)) if in_share(version, i))
    if not served_to(url, birds[first], first, version, card.serve_wait_s):
        return Cell(False, f"v{version} never answered a caller in {card.serve_wait_s:.0f} s")
    answers = ask(url, birds)
    met = [a.get("model_version") == version for a in answers]
    told = right(answers, birds, met)
    card.say(f"level 2: v{version} answered {sum(met)} of {len(birds)} callers ({told})")
    token = (card.lab.root / "level2" / "admin_token").read_text().strip()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        for answer, bird in zip(answers, birds, strict=True):
            if answer:
                http.post(
                    "/feedback",
                    json={"prediction_id": answer["prediction_id"], "species": bird["species"]},
                )
    card.say(
        "level 2: biologists confirm every caller's bird; the judge decides (make level2-judge)"
    )
    said = judged(card)
    card.say(said)
    if not said.startswith(f"level 2 judge: withdraw v{version}"):
        return Cell(False, f"not withdrawn: {said.removeprefix('level 2 judge: ')}")
    after = [a.get("model_version") == version for a in ask(url, birds)]
    # The judge moved the registry's switch; the service follows it within a poll.
    deadline = time.monotonic() + card.serve_wait_s
    while any(after) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        after = [a.get("model_version") == version for a in ask(url, birds)]
    reason = said.split(": ", 2)[-1]
    return Cell(
        not any(after),
        f"canary: v{version} met {sum(met)} of {len(birds)} callers; withdrawn: {reason}; "
        f"then {sum(after)} met it",
    )


def in_share(version: str, i: int) -> bool:
    return answers_caller(version, SHARE, caller(i).encode())


def served_to(url: str, bird: dict, i: int, version: str, wait_s: float) -> bool:
    """Whether caller `i` (one in the canary's share) comes to meet `version` within `wait_s`:
    the service picks the registry's switch up within a poll."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if ask(url, [bird], first=i)[0].get("model_version") == version:
            return True
        time.sleep(POLL_S)
    return False


def judged(card: Scorecard) -> str:
    """The judge's line once it decides (it waits while the log has not yet counted the
    confirmed birds)."""
    deadline = time.monotonic() + card.serve_wait_s
    while True:
        said = card.lab.run("level2_pipelines.rollout", "judge").stdout.strip()
        if not said.startswith("level 2 judge: wait") or time.monotonic() > deadline:
            return said
        time.sleep(1)
