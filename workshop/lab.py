"""The lab the scorecard, the demo and the drills work in: each level run as a person would run
it (its own entry points, in subprocesses), in a state folder of its own, with its service started
on a free loopback port. Levels are driven, never imported, so what is measured is what each level
does. The levels share no folder, port or database here, so one level's commands can run while
another's do.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shared.contract import FEATURES
from shared.servers import free_port, running_server, stop_group

if TYPE_CHECKING:  # MLflow, pandas and scikit-learn take ~8 s to import: only when used
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_NAME = "penguins-species"
COMMAND_TIMEOUT_S = 600
EXPERIMENT = "penguins-level2"


class ServiceFailed(RuntimeError):
    """A level's service did not start: which, and what it said before it stopped."""


@dataclass
class Lab:
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. a level 2 without a gate
    ports: dict[str, int] = field(default_factory=dict)
    prefect_port: int | None = None  # the lab's own Prefect server, while it runs

    def __post_init__(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        # Prefect creates its home folder but not the folders above it.
        (self.root / "level2" / "prefect").mkdir(parents=True)
        self.ports = {"level 0": free_port(), "level 1": free_port(), "level 2": free_port()}
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self._stopped = False

    @property
    def env(self) -> dict[str, str]:
        server = {"LEVEL2_PREFECT_PORT": str(self.prefect_port)} if self.prefect_port else {}
        return {
            "MLOPS_STATE_DIR": str(self.root),
            "LEVEL0_MODEL_PATH": str(self.root / "level0" / "model.pkl"),
            "LEVEL0_PORT": str(self.ports["level 0"]),
            "LEVEL1_STATE_DIR": str(self.root / "level1"),
            "LEVEL1_PORT": str(self.ports["level 1"]),
            "LEVEL2_STATE_DIR": str(self.root / "level2"),
            "LEVEL2_PORT": str(self.ports["level 2"]),
            "LEVEL2_POLL_SECONDS": "0.5",
            "LEVEL2_METRICS_EVERY_S": "0.5",  # live accuracy on /metrics within a second
            # Level 2's Prefect state stays in the lab too (not the user's state/level2/prefect).
            "PREFECT_HOME": str(self.root / "level2" / "prefect"),
            **server,
            **self.extra_env,
        }

    def run(
        self,
        *args: str,
        extra_env: dict[str, str] | None = None,
        check: bool = True,
        lab_env: bool = True,
    ):
        """`python -m ...` with the lab's environment (unless not `lab_env`); output captured.
        Each command runs in a process group of its own, so that `stop` can end it."""
        command = [sys.executable, "-m", *args]
        if self._stopped:
            raise RuntimeError(f"the lab was stopped; not running {' '.join(args)}")
        with subprocess.Popen(
            command,
            env={**os.environ, **(self.env if lab_env else {}), **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as process:
            with self._lock:
                self._running.add(process)
            try:
                stdout, stderr = process.communicate(timeout=COMMAND_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                stop_group(process, signal.SIGINT)  # as Ctrl-C: pytest stops its servers
                raise
            finally:
                with self._lock:
                    self._running.discard(process)
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        if check:
            result.check_returncode()
        return result

    def stop(self) -> None:
        """End every command still running (e.g. the tests in the background after a failure)."""
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for process in running:
            stop_group(process, signal.SIGINT)

    # --- level 0: the notebook, by hand ---
    def train_level0(self, out: str = "level0", new_batch: Path | None = None) -> dict:
        args = ["level0_notebook.run", "--output-dir", str(self.root / out)]
        self.run(*args, *(["--new-batch", str(new_batch)] if new_batch else []))
        return json.loads((self.root / out / "metrics.json").read_text())

    # --- level 1: train, then hand off ---
    def train_level1(self, out: Path | None = None, new_batch: Path | None = None) -> dict:
        out = out or self.root / "level1" / "artifacts"
        args = ["level1_devops.train", "--output-dir", str(out)]
        self.run(*args, *(["--new-batch", str(new_batch)] if new_batch else []))
        return json.loads((out / "card.json").read_text())

    def hand_off_level1(self, source: Path | None = None, destination: Path | None = None) -> None:
        """`make level1-handoff`, or the same step between two other folders."""
        args = ["level1_devops.handoff"]
        if source:
            args += ["--from", str(source)]
        if destination:
            args += ["--to", str(destination)]
        self.run(*args)

    def level1_cards(self) -> list[dict]:
        """The cards level 1 keeps where it keeps them: the artifacts and serving folders."""
        folders = (self.root / "level1" / "artifacts", self.root / "level1" / "serving")
        return [json.loads((f / "card.json").read_text()) for f in folders if f.exists()]

    # --- level 2: the pipeline and its registry ---
    def run_level2(self, *args: str, extra_env: dict[str, str] | None = None):
        return self.run("level2_pipelines.pipeline_cli", *args, extra_env=extra_env, check=False)

    @property
    def level2_store(self) -> Path:
        return self.root / "level2" / "mlflow.db"

    def registry(self) -> "MlflowClient":
        import mlflow

        uri = f"sqlite:///{self.level2_store}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        return mlflow.MlflowClient()

    def versions(self) -> dict[str, "ModelVersion"]:
        """Every registry version of the model, by version number, with its tags."""
        if not self.level2_store.exists():  # before level 2's first run; reading would create it
            return {}
        found = self.registry().search_model_versions(f"name = '{MODEL_NAME}'")
        return {str(v.version): v for v in found}

    def champion(self) -> str | None:
        """The version `champion` points at; None while there is none. A store that cannot be
        read raises, so that a broken store never reads as "the champion stayed"."""
        if not self.level2_store.exists():
            return None
        from mlflow.exceptions import MlflowException

        try:
            model = self.registry().get_registered_model(MODEL_NAME)
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None
        version = model.aliases.get("champion")
        return None if version is None else str(version)

    def tracked_runs(self) -> int:
        """How many MLflow runs level 2's experiment holds."""
        client = self.registry()
        experiment = client.get_experiment_by_name(EXPERIMENT)
        return 0 if experiment is None else len(client.search_runs([experiment.experiment_id]))

    def run_tests(self, folder: str, collect_only: bool = False, workers: int = 1):
        """A level's own tests, as its README runs them (`--co`: only count them; `workers`: on
        that many cores, as `make test` runs them). They get none of the lab's folders or ports,
        and a state folder and Prefect home of their own, so they can run while the lab's levels
        do."""
        args = ["pytest", folder, "-q", "-p", "no:cacheprovider", *(["--co"] * collect_only)]
        if workers > 1 and not collect_only:
            args += ["-n", str(workers), "--dist", "loadgroup"]
        home = self.root / "tests" / folder.replace("/", "-")
        (home / "prefect").mkdir(parents=True, exist_ok=True)
        env = {"MLOPS_STATE_DIR": str(home), "PREFECT_HOME": str(home / "prefect")}
        return self.run(*args, extra_env=env, check=False, lab_env=False)

    @contextmanager
    def prefect_server(self) -> Iterator[str]:
        """A Prefect server for level 2's runs, and its warm worker, as `make level2-up` gives a
        workshop: each run finds the server and skips booting a temporary one of its own (13-23 s
        apiece here), and once the worker is ready (~10 s) runs go to it instead of importing
        GX, MLflow and scikit-learn again. If the server does not start, the runs boot their own
        as before (slower, the same observations) and this yields why, not a URL."""
        port = free_port()
        # Only the API: no UI, and none of the scheduling services level 2's runs do not use.
        command = ("server", "start", "--host", "127.0.0.1", "--port", str(port))
        command += ("--no-ui", "--no-services")
        env = {**self.env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        server = running_server("prefect", env, port, "/api/health", command)
        with ExitStack() as stack:
            try:
                url = stack.enter_context(server)
            except (RuntimeError, TimeoutError) as error:
                yield f"not started ({last_line(str(error))})"
                return
            self.prefect_port = port
            try:
                stack.enter_context(self.warm_worker(f"{url}/api"))
                yield url
            finally:
                self.prefect_port = None

    @contextmanager
    def warm_worker(self, api_url: str) -> Iterator[None]:
        """Level 2's warm worker on the lab's server, recorded where `make level2-up` records it
        (its pid in the level's servers/warm.pid), which is where `make level2` looks. Not waited
        for: runs before it is ready happen in their own process, as without it. Started after
        `prefect_port` is set: a run goes to it only if their LEVEL2_ settings are the same."""
        servers = self.root / "level2" / "servers"
        servers.mkdir(parents=True, exist_ok=True)
        with (servers / "warm.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "level2_pipelines.ops.warm", "--api", api_url],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        (servers / "warm.pid").write_text(str(process.pid))
        try:
            yield
        finally:
            stop_group(process)  # SIGTERM, as `make level2-down` stops it
            (servers / "warm.pid").unlink(missing_ok=True)

    @contextmanager
    def services(self, levels: tuple[str, ...] = ("level 0", "level 1", "level 2")):
        """The levels' services, started together, each on its free port: {level: URL}."""
        with ExitStack() as stack:

            def start(level: str) -> str:
                module, probe = SERVICES[level]
                server = running_server(module, self.env, self.ports[level], probe)
                try:
                    return stack.enter_context(server)
                except (RuntimeError, TimeoutError) as error:
                    raise ServiceFailed(f"{level}'s service did not start: {error}") from error

            with ThreadPoolExecutor(len(levels)) as pool:
                urls = dict(zip(levels, pool.map(start, levels), strict=True))
            yield urls


SERVICES = {  # level -> (its service's module, a path that answers once it is up)
    "level 0": ("level0_notebook.serve", "/openapi.json"),
    "level 1": ("level1_devops.serve", "/health"),
    "level 2": ("level2_pipelines.serve", "/health"),
}


def stop_on_sigterm() -> None:
    """Make SIGTERM (a CI job cancelled, `timeout`, `kill`) stop this command as Ctrl-C does:
    the with-blocks that started the lab's servers and workers unwind and stop them. Without it
    Python dies at once, and the servers, each in a session of its own, run on."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def held_out_rows() -> "pd.DataFrame":
    """The held-out birds with every feature recorded: requests any level can take as they are
    (level 0's server has no notion of an optional field)."""
    from shared.data import load_penguins, split_train_test

    _, test = split_train_test(load_penguins())
    return test[list(FEATURES)].dropna()
