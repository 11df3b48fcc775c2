"""The lab the scorecard and drills work in: each level run as a person would run it (its own
entry points, in subprocesses), in a state folder of its own, with its service started on a free
loopback port. Levels are driven, never imported, so what is measured is what each level does.
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from shared.contract import FEATURES
from shared.data import load_penguins, split_train_test
from shared.servers import free_port, running_server

MODEL_NAME = "penguins-species"
EXPERIMENT = "penguins-level2"


@dataclass
class Lab:
    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. a level 2 without a gate
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.ports = {"level 0": free_port(), "level 1": free_port(), "level 2": free_port()}

    @property
    def env(self) -> dict[str, str]:
        return {
            "MLOPS_STATE_DIR": str(self.root),
            "LEVEL0_MODEL_PATH": str(self.root / "level0" / "model.pkl"),
            "LEVEL0_PORT": str(self.ports["level 0"]),
            "LEVEL1_STATE_DIR": str(self.root / "level1"),
            "LEVEL1_PORT": str(self.ports["level 1"]),
            "LEVEL2_STATE_DIR": str(self.root / "level2"),
            "LEVEL2_PORT": str(self.ports["level 2"]),
            "LEVEL2_POLL_SECONDS": "0.5",
            **self.extra_env,
        }

    def run(self, *args: str, extra_env: dict[str, str] | None = None, check: bool = True):
        """`python -m ...` with the lab's environment; output captured."""
        return subprocess.run(
            [sys.executable, "-m", *args],
            env={**os.environ, **self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            check=check,
            timeout=600,
        )

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
        return self.run("level2_pipelines.run", *args, extra_env=extra_env, check=False)

    @property
    def level2_store(self) -> Path:
        return self.root / "level2" / "mlflow.db"

    def registry(self) -> MlflowClient:
        uri = f"sqlite:///{self.level2_store}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        return MlflowClient()

    def versions(self) -> dict[str, ModelVersion]:
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

    @contextmanager
    def services(self) -> Iterator[dict[str, str]]:
        """All three services, up at once, each on its free port."""
        with ExitStack() as stack:
            urls = {}
            for level, module, probe in (
                ("level 0", "level0_notebook.serve", "/openapi.json"),
                ("level 1", "level1_devops.serve", "/health"),
                ("level 2", "level2_pipelines.serve", "/health"),
            ):
                env = {**self.env}
                urls[level] = stack.enter_context(
                    running_server(module, env, self.ports[level], probe)
                )
            yield urls


def held_out_rows() -> pd.DataFrame:
    """The held-out birds with every feature recorded: requests any level can take as they are
    (level 0's server has no notion of an optional field)."""
    _, test = split_train_test(load_penguins())
    return test[list(FEATURES)].dropna()
