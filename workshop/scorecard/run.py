"""One scorecard run: drive every level through the lab, and fill each cell from a probe.

The levels share no folder, port or database in the lab, so each phase runs the three levels'
commands side by side (one thread per level, each waiting on its subprocesses), and each
level's own tests run in the background (from the moment the lab's Prefect server is up: its
start is on level 2's path). Level 2's five pipeline runs share that one server instead of
booting a temporary one each. Phases follow one another where an observation needs it: the
services are probed before new data replaces their models, levels 0 and 1 are looked at only
after level 2 had its time to follow, and the load test runs last, alone, so that nothing else
competes with the services for the two cores.

Nothing is trained for one cell only when another's training shows the same: the two first
trainings give reproducibility, the record of training and the models every service serves;
the corrupted batch, the worse model and the new data each need a training of their own.
"""

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from workshop.lab import Lab, held_out_rows
from workshop.scorecard import probes
from workshop.scorecard.cells import (
    BAD_REQUESTS,
    CORRUPTED,
    DRIFT,
    ENDPOINTS,
    KNOWLEDGE,
    LEVELS,
    LIVE_ACCURACY,
    NEW_DATA,
    RECORDS,
    REPRODUCIBLE,
    ROLLBACK,
    SAME_MODEL,
    TESTS,
    WORSE,
    Cell,
    Row,
    attempt,
    last_words,
    not_measured,
    row_rank,
    serving_row,
    shown,
)
from workshop.scorecard.probes import Level2Run

if TYPE_CHECKING:
    import pandas as pd

LOAD_SECONDS = 3.0
DRIFT_WINDOW = 200  # the drift monitor's window: the traffic it needs for a verdict
# Level 2's service polls the registry every 0.5 s in the lab and deploy asks it to reload at
# once; 30 s is far beyond both, so a model not served by then is not coming.
SERVE_WAIT_S = 30.0
TEST_FOLDERS = {
    "level 0": "level0_notebook",
    "level 1": "level1_devops/tests",
    "level 2": "level2_pipelines/tests",
}


def side_by_side(steps: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run each level's step in a thread of its own; their results by level. The first error
    is raised once every step has finished, so no level is left running behind it."""
    with ThreadPoolExecutor(max(1, len(steps))) as pool:
        futures = {name: pool.submit(step) for name, step in steps.items()}
    return {name: future.result() for name, future in futures.items()}


class Scorecard:
    """The cells of one run, and the probes that fill them, level by level."""

    def __init__(self, lab: Lab, progress: Callable[[str], None]) -> None:
        self.lab, self.say = lab, progress
        self.cells: dict[str, dict[str, Cell]] = {}
        self.latency: dict[str, dict[str, float]] = {}
        self.serve_wait_s = SERVE_WAIT_S
        self.load_seconds = LOAD_SECONDS
        self.drift_window = DRIFT_WINDOW
        self._lock = threading.Lock()
        self._tests: dict[str, Future] = {}
        # What the first trainings left, for the probes that compare or restore.
        self.level0_pickles: list[bytes] = []
        self.first_card: dict = {}
        self.card: dict = {}
        self.level2_versions: list[str] = []
        self.level2_runs = 0

    # --- the table ---

    def put(self, capability: str, level: str, cell: Cell) -> None:
        """One level's cell; the row is told once all three levels have theirs."""
        with self._lock:
            row = self.cells.setdefault(capability, {})
            row[level] = cell
            complete = len(row) == len(LEVELS)
        if complete:
            self.say(f"   {capability}: " + " | ".join(f"{lv} {row[lv]}" for lv in LEVELS))

    def add(self, capability: str, cells: dict[str, Cell]) -> None:
        for level in LEVELS:
            self.put(capability, level, cells[level])

    @property
    def rows(self) -> list[Row]:
        """The rows with a cell for every level, in the table's order."""
        with self._lock:
            done = [(c, dict(row)) for c, row in self.cells.items() if len(row) == len(LEVELS)]
        return sorted(done, key=lambda row: row_rank(row[0]))

    # --- training, as each README says ---

    def train_level0(self) -> None:
        self.level0_pickles = []
        for _ in range(2):
            self.lab.train_level0()
            self.level0_pickles.append((self.lab.root / "level0" / "model.pkl").read_bytes())

    def train_level1(self) -> None:
        self.first_card = self.lab.train_level1()
        self.card = self.lab.train_level1()  # same folder, as a person reruns it
        self.lab.hand_off_level1()

    def train_level2(self) -> None:
        self.level2_versions, self.level2_runs = [], 0
        for args in ((), ("--force",)):  # level 2 skips a batch it has trained, unless forced
            before = set(self.lab.versions())
            self.lab.run_level2(*args).check_returncode()
            self.level2_runs += 1
            self.level2_versions += sorted(set(self.lab.versions()) - before, key=int)

    def train_everything(self, before_level2: Callable[[], None] = lambda: None) -> None:
        """Each level trained twice on the shared data, side by side, and put in service (level
        1 handed off, level 2 promoted). `before_level2` runs first in level 2's thread (e.g.
        starting the lab's Prefect server while the other levels train)."""
        self.say("training every level twice, side by side, each in its own folder of the lab")

        def level2() -> None:
            before_level2()
            self.train_level2()

        side_by_side(
            {"level 0": self.train_level0, "level 1": self.train_level1, "level 2": level2}
        )

    # --- each level's own tests, in the background ---

    def start_tests(self, collect_only: bool, pool: ThreadPoolExecutor) -> None:
        what = "counting" if collect_only else "running"
        self.say(f"{what} each level's own tests in the background, from now on")
        for level in ("level 2", "level 1", "level 0"):  # the longest first
            folder = TEST_FOLDERS[level]
            # Level 2's suite is the longest, and the last thing the run waits for: both cores,
            # which it has to itself once the probes are done.
            workers = 2 if level == "level 2" else 1
            self._tests[level] = pool.submit(self.lab.run_tests, folder, collect_only, workers)
        self.collect_only = collect_only

    def tests_finished(self) -> bool:
        return all(future.done() for future in self._tests.values())

    def finish_tests(self) -> None:
        for level in LEVELS:
            result = self._tests[level].result()
            output = result.stdout + result.stderr
            self.put(TESTS, level, probes.tests_cell(result.returncode, output, self.collect_only))

    def probe_tests(self, quick: bool) -> None:
        with ThreadPoolExecutor(len(LEVELS)) as pool:
            self.start_tests(quick, pool)
            self.finish_tests()

    # --- the services ---

    def probe_services(self, urls: dict[str, str]) -> None:
        rows = held_out_rows()
        self.say(f"sending {len(rows)} held-out birds and the invalid requests to every service")

        def observe(url: str) -> dict[str, Any]:
            ask = probes.service_probes(url)
            return {
                SAME_MODEL: probes.served_probabilities(url, rows),
                BAD_REQUESTS: probes.probe_bad_requests(ask["post"]),
                ENDPOINTS: probes.probe_endpoints(ask["get"]),
                KNOWLEDGE: probes.probe_knowledge(ask["get_json"]),
            }

        seen = side_by_side({lv: lambda url=url: observe(url) for lv, url in urls.items()})
        served = {lv: seen[lv].pop(SAME_MODEL) for lv in LEVELS}
        self.add(SAME_MODEL, probes.same_model_cells(served, len(rows)))
        for capability in (BAD_REQUESTS, ENDPOINTS, KNOWLEDGE):
            self.add(capability, {lv: seen[lv][capability] for lv in LEVELS})

    def probe_latencies(self) -> None:
        """One level at a time, nothing else running: each has the machine to itself."""
        self.say(f"load: 8 concurrent clients, {self.load_seconds:g} s per service")
        cells = {}
        for level in LEVELS:
            cells[level], self.latency[level] = probes.probe_latency(
                self.lab.ports[level], self.load_seconds
            )
        self.add(serving_row(self.load_seconds), cells)

    # --- what the two trainings left ---

    def probe_reproducibility(self) -> None:
        recorded = json.loads((self.lab.root / "level0" / "metrics.json").read_text())
        first, second = self.level0_pickles
        self.add(
            REPRODUCIBLE,
            {
                "level 0": probes.reproducibility_level0(first, second, held_out_rows(), recorded),
                "level 1": probes.reproducibility_level1(self.first_card, self.card),
                "level 2": probes.reproducibility_level2(self.level2_versions, self.lab.versions()),
            },
        )

    def probe_records(self) -> None:
        records = sorted(p.name for p in (self.lab.root / "level0").glob("*.json"))
        self.add(
            RECORDS,
            {
                "level 0": probes.records_level0(records),
                "level 1": probes.records_level1(self.first_card, self.lab.level1_cards()),
                "level 2": probes.records_level2(self.lab.tracked_runs(), self.level2_runs),
            },
        )

    # --- reading level 2 ---

    def run_level2(self, *args: str) -> Level2Run:
        """Run the pipeline, reading the registry before and after. The versions this run
        registered are the new ones whose MLflow run is the one the pipeline printed."""
        from mlflow.exceptions import MlflowException  # ~5 s to import: only when used

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
        return probes.served_version(url)

    # --- a corrupted batch ---

    def corrupted_batch(self) -> Path:
        path = self.lab.root / "corrupted.csv"
        if not path.exists():
            from shared.simulate import Corruption, simulate_batch  # scikit-learn: ~5 s

            corruption = Corruption(
                out_of_range_rate={"body_mass_g": 0.3}, null_rate={"bill_length_mm": 0.3}
            )
            simulate_batch(300, seed=21, corruption=corruption).to_csv(path, index=False)
        return path

    def probe_bad_data(self) -> None:
        path = self.corrupted_batch()
        self.say("a corrupted batch arrives (30% impossible masses, 30% missing bills)")
        cells = side_by_side(
            {
                "level 0": lambda: self.corrupted_level0(path),
                "level 1": lambda: self.corrupted_level1(path),
                "level 2": lambda: self.corrupted_level2(path),
            }
        )
        self.add(CORRUPTED, cells)

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

    def corrupted_level2(self, batch: Path) -> Cell:
        run = self.run_level2("--batch", str(batch))
        stderr = run.result.stderr if run.result else ""
        failed = [line.strip()[2:] for line in stderr.splitlines() if line.startswith("  - ")]
        if failed:
            self.say(f"level 2 validation named: {'; '.join(failed[:2])}")
        return probes.corrupted_batch_cell(run)

    # --- a worse model ---

    def shuffled_batch(self, shuffled_share: float) -> Path:
        """2,000 new birds, `shuffled_share` of them with their species shuffled."""
        path = self.lab.root / f"shuffled-{shuffled_share:.2f}.csv"
        if not path.exists():
            from shared.simulate import simulate_batch

            batch = simulate_batch(2000, seed=22)
            rows = batch.sample(frac=shuffled_share, random_state=0).index
            batch.loc[rows, "species"] = (
                batch.loc[rows, "species"].sample(frac=1, random_state=1).to_numpy()
            )
            batch.to_csv(path, index=False)
        return path

    def probe_worse_model(self, shuffled_share: float = 1.0) -> None:
        path = self.shuffled_batch(shuffled_share)
        self.say(
            f"a worse model is trained (2,000 birds, {shuffled_share:.0%} with shuffled species)"
        )
        cells = side_by_side(
            {
                "level 0": lambda: self.worse_model_level0(path),
                "level 1": lambda: self.worse_model_level1(path),
                "level 2": lambda: self.worse_model_level2(path),
            }
        )
        self.add(WORSE, cells)

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

    def worse_model_level2(self, batch: Path) -> Cell:
        run = self.run_level2("--batch", str(batch))
        if run.registered:
            self.say(f"level 2: v{run.version} gate={run.tags.get('gate')}: {run.first_reason}")
        return probes.worse_model_cell(run)

    # --- new data, then rollback ---

    def new_birds(self) -> Path:
        path = self.lab.root / "new_birds.csv"
        if not path.exists():
            from shared.simulate import simulate_batch

            simulate_batch(200, seed=23).to_csv(path, index=False)
        return path

    def probe_new_data_and_rollback(self, urls: dict[str, str]) -> None:
        self.probe_rollback(urls, self.probe_new_data(urls))

    def probe_new_data(
        self, urls: dict[str, str], also: dict[str, Callable[[], None]] | None = None
    ) -> dict[str, Any]:
        """Retrain every level on new birds, as its README says, side by side, then look at
        what each service serves. `also` runs first in each level's thread (the full run's
        corrupted batch and worse model). Returns what each level served before: the model a
        rollback restores."""
        new_birds = self.new_birds()
        pickle_path = self.lab.root / "level0" / "model.pkl"
        replaced = {
            "level 0": pickle_path.read_bytes(),
            "level 1": probes.served_card(urls["level 1"]),
        }
        also = also or {}
        handed_off: dict[str, float] = {}

        def level0() -> None:
            also.get("level 0", lambda: None)()
            self.lab.train_level0(new_batch=new_birds)  # into the folder its server reads from
            handed_off["level 0"] = time.perf_counter()

        def level1() -> dict:
            also.get("level 1", lambda: None)()
            card = self.lab.train_level1(new_batch=new_birds)
            self.lab.hand_off_level1()
            handed_off["level 1"] = time.perf_counter()
            return card

        def level2() -> tuple[Cell, float]:
            also.get("level 2", lambda: None)()
            replaced["level 2"] = self.served_version(urls["level 2"])  # after `also`'s runs
            self.say("new data arrives: each level retrains as its README says")
            started = time.perf_counter()
            cell = self.new_data_level2(urls["level 2"], new_birds, replaced["level 2"])
            return cell, time.perf_counter() - started

        done = side_by_side({"level 0": level0, "level 1": level1, "level 2": level2})
        level2_cell, level2_took = done["level 2"]
        # Levels 0 and 1 are looked at once each has had, since its hand-off, at least the time
        # level 2 took from the new batch to a served champion: the same chance to follow.
        latest = max(handed_off["level 0"], handed_off["level 1"])
        time.sleep(max(0.0, latest + level2_took - time.perf_counter()))
        now = time.perf_counter()
        self.add(
            NEW_DATA,
            {
                "level 0": probes.new_data_level0(
                    urls["level 0"],
                    replaced["level 0"],
                    pickle_path.read_bytes(),
                    now - handed_off["level 0"],
                    held_out_rows(),
                ),
                "level 1": probes.new_data_level1(
                    urls["level 1"],
                    replaced["level 1"],
                    done["level 1"]["version"],
                    now - handed_off["level 1"],
                ),
                "level 2": level2_cell,
            },
        )
        return replaced

    def new_data_level2(self, url: str, batch: Path, before: str | None) -> Cell:
        """✓ only if the service comes to serve a version this batch's run registered and
        promoted, other than the one it served before, within `serve_wait_s`."""
        start = time.perf_counter()
        run = self.run_level2("--batch", str(batch))
        refused = probes.new_data_level2(run)
        if refused is not None:
            return refused
        served, seen = probes.wait_until_served(url, run.version, self.serve_wait_s)
        if not served:
            return probes.not_served(run.version, seen, before, self.serve_wait_s)
        seconds = time.perf_counter() - start
        return Cell(
            True,
            f"automatic: {seconds:.0f} s from batch to v{run.version} served (was {shown(before)})",
        )

    def probe_rollback(self, urls: dict[str, str], replaced: dict[str, Any]) -> None:
        self.say("the latest model must be withdrawn")
        self.add(
            ROLLBACK,
            {
                "level 0": probes.rollback_level0(self.lab.root / "level0", replaced["level 0"]),
                "level 1": probes.rollback_level1(self.lab.root / "level1", replaced["level 1"]),
                "level 2": self.rollback_level2(urls["level 2"]),
            },
        )

    def rollback_level2(self, url: str) -> Cell:
        start = time.perf_counter()
        result = self.lab.run("level2_pipelines.registry", "rollback", check=False)
        moved = re.search(r"from v(\d+) back to v(\d+)", result.stdout)
        if moved is None:
            return Cell(False, f"failed: {last_words(result.stderr or result.stdout)}")
        self.say(f"level 2: `make level2-rollback` said: {moved[0]}")
        served, seen = probes.wait_until_served(url, moved[2], self.serve_wait_s)
        if not served:
            return probes.not_served(moved[2], seen, moved[1], self.serve_wait_s)
        seconds = time.perf_counter() - start
        return Cell(True, f"one command: v{moved[1]} to v{moved[2]}, served after {seconds:.1f} s")

    # --- the world moves: drift in served traffic ---

    def drifted_birds(self) -> "pd.DataFrame":
        """A window of birds whose bills are one standard deviation (of the real birds) longer
        than any model learned: the world moved, and every service is asked about them."""
        from shared.data import load_penguins
        from shared.simulate import Drift, simulate_batch

        shift = float(load_penguins()["bill_length_mm"].std())
        drift = Drift(mean_shift={"bill_length_mm": shift})
        return simulate_batch(self.drift_window, seed=31, drift=drift)

    def probe_drift(self, urls: dict[str, str]) -> None:
        birds = self.drifted_birds()
        self.say(
            f"the world moves: {len(birds)} birds with bills 1 sd longer are asked about at "
            "every service, and biologists confirm their species"
        )

        def unnoticed(level: str) -> Callable[[], tuple[Cell, Cell]]:
            folder = self.lab.root / level.replace(" ", "")  # e.g. level0/
            return lambda: probes.drift_unnoticed(urls[level], folder, birds)

        done = side_by_side(
            {
                "level 0": unnoticed("level 0"),
                "level 1": unnoticed("level 1"),
                "level 2": lambda: self.drift_level2(urls["level 2"], birds),
            }
        )
        self.add(DRIFT, {level: done[level][0] for level in LEVELS})
        self.add(LIVE_ACCURACY, {level: done[level][1] for level in LEVELS})

    def drift_level2(self, url: str, birds: "pd.DataFrame") -> tuple[Cell, Cell]:
        """The drifted traffic and its confirmed species, then the monitor on demand and the
        retraining its verdict asks for (the run the on-drift deployment starts): seconds from
        the traffic's start to detection, and to the new champion served."""
        start = time.perf_counter()
        before = self.served_version(url)
        answered, ids = probes.ask_about(url, birds)
        token = (self.lab.root / "level2" / "admin_token").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            confirmed = sum(
                http.post("/feedback", json={"prediction_id": i, "species": s}).status_code == 200
                for i, s in zip(ids, birds["species"], strict=False)
            )
        known = probes.live_accuracy(url, str(before), confirmed, self.serve_wait_s)
        accuracy = (
            Cell(True, f"{known[0]:.2f} for v{before} on {known[1]:.0f} confirmed birds (/metrics)")
            if known
            else Cell(False, f"/metrics shows none for v{before} after {confirmed} confirmations")
        )
        monitor = self.lab.run("level2_pipelines.monitor", check=False)
        verdict = re.search(r"level 2 monitor: (\S+): (.*)", monitor.stdout)
        run_id = re.search(r"MLflow run (\w+)", monitor.stdout)
        if verdict is None or verdict[1] != "asked" or run_id is None:
            said = verdict[0] if verdict else last_words(monitor.stderr or monitor.stdout)
            return Cell(False, f"not detected: {said}"), accuracy
        detected = time.perf_counter() - start
        self.say(f"level 2: the monitor {verdict[2].split(';')[0]} ({detected:.0f} s)")
        run = self.run_level2("--drift-run-id", run_id[1])
        refused = probes.new_data_level2(run)
        if refused is not None:
            failed = f"detected in {detected:.0f} s; retraining: {refused.text}"
            return Cell(False, failed), accuracy
        served, seen = probes.wait_until_served(url, run.version, self.serve_wait_s)
        if not served:
            return probes.not_served(run.version, seen, before, self.serve_wait_s), accuracy
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

    # --- the whole run ---

    def probe_changes(self, urls: dict[str, str]) -> None:
        """A corrupted batch, a worse model and new data: each level takes the three in turn in
        its own thread (their folders are apart), then the rollback."""
        corrupted, worse = self.corrupted_batch(), self.shuffled_batch(1.0)
        self.say("each level meets a corrupted batch, a worse model and new data, side by side")

        def level(name: str, corrupted_cell, worse_cell) -> Callable[[], None]:
            def steps() -> None:
                self.put(CORRUPTED, name, corrupted_cell(corrupted))
                self.put(WORSE, name, worse_cell(worse))

            return steps

        also = {
            "level 0": level("level 0", self.corrupted_level0, self.worse_model_level0),
            "level 1": level("level 1", self.corrupted_level1, self.worse_model_level1),
            "level 2": level("level 2", self.corrupted_level2, self.worse_model_level2),
        }
        self.probe_rollback(urls, self.probe_new_data(urls, also))

    def run(self, quick: bool = False) -> None:
        """Every probe, every level: the whole scorecard."""
        with ExitStack() as stack, ThreadPoolExecutor(len(LEVELS)) as tests:
            try:

                def prefect() -> None:  # in level 2's thread, while the others train
                    self.say_prefect(stack.enter_context(self.lab.prefect_server()))
                    # Only now: the server's start is on level 2's path, and the machine
                    # has two cores.
                    self.start_tests(quick, tests)

                self.train_everything(before_level2=prefect)
                with self.lab.services() as urls:
                    self.say("services up: " + ", ".join(f"{lv} {u}" for lv, u in urls.items()))
                    self.probe_services(urls)
                    self.probe_reproducibility()
                    self.probe_records()
                    self.probe_changes(urls)
                    self.probe_drift(urls)
                    stack.close()  # the Prefect server: no level 2 run is left
                    if not self.tests_finished():
                        self.say("waiting for the levels' own tests to finish")
                    self.finish_tests()
                    self.probe_latencies()
            except BaseException:
                self.lab.stop()  # the tests in the background: a failed run does not wait
                raise

    def say_prefect(self, server: str) -> None:
        if server.startswith("http"):
            self.say(f"level 2's runs use the lab's Prefect server at {server}")
        else:
            self.say(f"the lab's Prefect server: {server}; each level 2 run boots its own")
