"""One settings class for level 2. Every value can be set from the environment (`LEVEL2_...`)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.paths import state_dir

PLACEHOLDER_TOKEN = "change-me"  # refused outside development


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEVEL2_")

    state_dir: Path = Field(default_factory=lambda: state_dir() / "level2")
    environment: Literal["development", "production"] = "development"
    seed: int = 42

    # Registry and tracking: a local SQLite store and artifact folder unless pointed elsewhere
    # (e.g. LEVEL2_TRACKING_URI=postgresql://... or http://an-mlflow-server:5000).
    tracking_uri: str | None = None
    experiment: str = "penguins-level2"
    model_name: str = "penguins-species"

    # The gate a candidate must pass before it becomes champion.
    macro_f1_floor: float = 0.90
    regression_tolerance: float = 0.02  # allowed drop in macro F1 against the champion
    island_accuracy_floor: float = 0.85  # on each island's held-out birds
    approval: Literal["auto", "manual"] = "auto"  # manual: candidate waits as `challenger`
    min_batch_rows: int = 20
    retrain_cron: str = "0 3 * * *"  # the scheduled deployment: every day at 03:00
    work_pool: str | None = None  # where published deployments run; None: a serving runner

    # The service.
    host: str = "127.0.0.1"
    port: int = 8002
    poll_seconds: float = Field(default=1.0, gt=0)  # how often it asks who is champion
    admin_token: SecretStr = SecretStr(PLACEHOLDER_TOKEN)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    access_log: bool = False

    # The workshop's local servers (`make level2-up`).
    prefect_port: int = 4200
    mlflow_ui_port: int = 5000

    @model_validator(mode="after")
    def _refuse_placeholder_token(self) -> "Settings":
        if self.environment != "development" and (
            self.admin_token.get_secret_value() == PLACEHOLDER_TOKEN
        ):
            raise ValueError(
                "LEVEL2_ADMIN_TOKEN is the placeholder; set a real token outside development"
            )
        return self

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "mlartifacts"

    @property
    def incoming_dir(self) -> Path:
        """Drop a CSV or Parquet batch here and the watcher starts a run."""
        return self.state_dir / "incoming"

    @property
    def batches_dir(self) -> Path:
        """Every batch that passed validation, kept by id for lineage."""
        return self.state_dir / "batches"

    @property
    def quarantine_dir(self) -> Path:
        """Every batch that failed validation, kept with the failed checks."""
        return self.state_dir / "quarantine"

    @property
    def data_docs_dir(self) -> Path:
        return self.state_dir / "data_docs"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"
