"""`make demo`: run each level end to end, show them answering the same requests, and end with
the scorecard of what just ran.

    python -m workshop.demo [--new-data]

`--new-data` adds a step (about a minute more): new birds arrive, each level retrains as its
README says, and the new model is then withdrawn; the table gains those two rows.

Everything happens in a lab folder of its own (state/demo/lab/, started afresh each time), with
each level run by its own entry points as its README says. The three levels train side by side
(they share no folder, port or database) and each service starts as soon as its level has a
model. The scorecard at the end is built from the probes of this run: each level trains once
(and once more on the new data, with `--new-data`), nothing else. The probes that need more
(two trainings each, a corrupted batch, a worse model, the levels' own test suites) are `make
scorecard`'s.
"""

import argparse
import json
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx

from shared.contract import EXAMPLE_PAYLOAD, INVALID_EXAMPLES
from shared.paths import state_dir
from workshop.lab import Lab, ServiceFailed, stop_on_sigterm
from workshop.scorecard.cells import LEVELS, failed_service, failed_step
from workshop.scorecard.render import write_reports
from workshop.scorecard.runner import new_data_and_rollback, probe_services
from workshop.scorecard.scenarios import serving
from workshop.scorecard.table import Scorecard

LOAD_SECONDS = 1.0  # per service: enough for a figure to compare, short enough for a demo
SKIPPED_ROWS = (
    "reproducible training, experiment record, a corrupted batch, a worse model, and the "
    "tests that guard each level"
)


class Narrator:
    """Every line says how long the demo has been running; each step says what and why."""

    def __init__(self, steps: int) -> None:
        self.started = time.perf_counter()
        self.steps, self.step_number = steps, 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def say(self, message: str) -> None:
        print(f"[{self.elapsed():4.0f} s] {message}", flush=True)

    def step(self, title: str, why: str) -> None:
        self.step_number += 1
        heading = f"step {self.step_number} of {self.steps}: {title} "
        print(f"\n[{self.elapsed():4.0f} s] === {heading}" + "=" * max(0, 66 - len(heading)))
        print(textwrap.fill(why, 96, initial_indent="         why: ", subsequent_indent=" " * 14))


def indented(text: str, limit: int = 12) -> None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    for line in lines[:limit]:
        print(f"         | {line}")
    if len(lines) > limit:
        print(f"         | ... ({len(lines) - limit} more lines)")


def train_and_serve(
    card: Scorecard, pool: ThreadPoolExecutor, stack: ExitStack, with_new_data: bool
) -> dict:
    """Each level trains once, side by side, is put in service as its README says, and its
    service starts as soon as it has a model: {level: Future of (what training said, URL)}."""
    lab = card.lab

    def serve(level: str) -> str:
        return stack.enter_context(lab.services((level,)))[level]

    def level0() -> tuple[dict, str]:
        return lab.train_level0(), serve("level 0")

    def level1() -> tuple[dict, str]:
        trained = lab.train_level1()
        lab.hand_off_level1()
        return trained, serve("level 1")

    def level2() -> tuple[subprocess.CompletedProcess, str]:
        if with_new_data:  # two runs share one server; a single run boots its own faster
            card.say_prefect(stack.enter_context(lab.prefect_server()))
        run = lab.run_level2()
        run.check_returncode()
        return run, serve("level 2")

    steps = {"level 0": level0, "level 1": level1, "level 2": level2}
    return {level: pool.submit(step) for level, step in steps.items()}


def show_level0(demo: Narrator, card: Scorecard, metrics: dict) -> None:
    demo.step(
        "level 0, a notebook run by hand",
        "level 0 is EDA and training in a notebook; what leaves it is a pickle and a metrics file",
    )
    folder = card.lab.root / "level0"
    demo.say(f"$ python -m level0_notebook.run --output-dir {folder}")
    print(f"         accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}")
    print(f"         left in {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")


def show_level1(demo: Narrator, card: Scorecard, model_card: dict) -> None:
    demo.step(
        "level 1, a tested package with a model card",
        "the same recipe as a package with a training CLI and a card; the hand-off into service "
        "is still a person's command",
    )
    demo.say("$ python -m level1_devops.train && python -m level1_devops.handoff")
    scores = model_card["metrics"]
    print(
        f"         card: version {model_card['version']}, accuracy {scores['accuracy']:.3f}, "
        f"macro F1 {scores['macro_f1']:.3f}"
    )
    print(f"         handed off to {card.lab.root / 'level1' / 'serving'}")


def show_level2(demo: Narrator, run: subprocess.CompletedProcess) -> None:
    demo.step(
        "level 2, an automated pipeline",
        "ingest, validate (Great Expectations), train, evaluate against the champion, register "
        "(MLflow) and promote, in one Prefect flow; the service follows the registry",
    )
    demo.say("$ python -m level2_pipelines.pipeline_cli")
    indented(run.stdout)


def compare(demo: Narrator, card: Scorecard, urls: dict[str, str]) -> None:
    demo.step(
        "the same requests to every level's service",
        "the three serve the same model; what differs is what each does with a bad request and "
        "what it can say about its model",
    )
    demo.say(f"request: {json.dumps(EXAMPLE_PAYLOAD)}")
    for level, url in urls.items():
        response = httpx.post(f"{url}/predict", json=EXAMPLE_PAYLOAD, timeout=10)
        body = response.json()
        top = ", ".join(f"{k} {v:.4f}" for k, v in body["probabilities"].items())
        version = body.get("model_version", "(no version)")
        print(f"         {level}: {response.status_code} {body['species']} [{top}] model {version}")
    print("\n         invalid requests (status per level):")
    print(f"         {'example':<16}" + "".join(f"{level:>10}" for level in urls))
    for example in INVALID_EXAMPLES:
        statuses = [
            httpx.post(
                f"{url}/predict",
                content=example.body,
                headers={"content-type": "application/json"},
                timeout=10,
            ).status_code
            for url in urls.values()
        ]
        print(f"         {example.name:<16}" + "".join(f"{s:>10}" for s in statuses))
    print()
    probe_services(card, urls)


def new_data(demo: Narrator, card: Scorecard, urls: dict[str, str]) -> None:
    demo.step(
        "new data arrives, then the new model must be withdrawn",
        "each level retrains on 200 new birds as its README says: does the service follow by "
        "itself? Then: can the level go back?",
    )
    for capability, cells in new_data_and_rollback(card, urls):
        print(f"         {capability}:")
        for level in LEVELS:
            print(f"           {level}: {cells[level]}")


def scorecard(demo: Narrator, card: Scorecard, out: Path) -> str:
    demo.step(
        "the scorecard of what just ran",
        "the same probes against every level, read from this demo's levels and services, and "
        f"a short load ({LOAD_SECONDS:g} s per service, 8 clients) on each",
    )
    card.add(serving.observe(card))
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `make demo` in {demo.elapsed():.0f} s"
    return write_reports(out, card.rows, card.latency, when)


def run_demo(demo: Narrator, lab: Lab, with_new_data: bool = False) -> str:
    """Every step, in `lab`; the scorecard's Markdown, also written next to the lab."""
    card = Scorecard(lab, demo.say)
    card.load_seconds = LOAD_SECONDS
    demo.say(f"working in {lab.root} (a fresh folder; your state/level* folders are not touched)")
    with ExitStack() as stack, ThreadPoolExecutor(len(LEVELS)) as pool:
        try:
            return demo_steps(demo, card, stack, pool, with_new_data)
        except BaseException:
            lab.stop()  # what still runs: a failed demo does not wait for it
            raise


def demo_steps(
    demo: Narrator,
    card: Scorecard,
    stack: ExitStack,
    pool: ThreadPoolExecutor,
    with_new_data: bool,
) -> str:
    demo.say("the three levels train side by side, each in its own folder, and each service")
    demo.say("   starts once its level has a model")
    futures = train_and_serve(card, pool, stack, with_new_data)
    trained, urls = {}, {}
    for level, show in (("level 0", show_level0), ("level 1", show_level1)):
        trained[level], urls[level] = futures[level].result()  # each shown once it is done
        show(demo, card, trained[level])
    run, urls["level 2"] = futures["level 2"].result()
    show_level2(demo, run)
    demo.say("services up: " + ", ".join(f"{lv} {u}" for lv, u in urls.items()))
    compare(demo, card, urls)
    if with_new_data:
        new_data(demo, card, urls)
    return scorecard(demo, card, card.lab.root.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every level and show what each gives.")
    parser.add_argument(
        "--new-data", action="store_true", help="also: new data arrives, then a rollback"
    )
    args = parser.parse_args()
    stop_on_sigterm()
    demo = Narrator(steps=6 if args.new_data else 5)
    out = state_dir() / "demo"
    try:
        text = run_demo(demo, Lab(out / "lab"), args.new_data)
    except subprocess.CalledProcessError as error:
        sys.exit(f"demo: {failed_step(error)}")
    except ServiceFailed as error:
        sys.exit(f"demo: {failed_service(error)}")
    print("\n" + text)
    skipped = SKIPPED_ROWS if args.new_data else f"new data, rollback, {SKIPPED_ROWS}"
    print(f"Not in this table: {skipped}.")
    print("`make scorecard` measures those too, in a few minutes.")
    print(f"written: {out / 'scorecard.md'}, scorecard.html and scorecard.json")
    print(f"\nmake demo: done in {demo.elapsed():.0f} s")


if __name__ == "__main__":
    main()
