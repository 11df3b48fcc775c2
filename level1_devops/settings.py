"""One settings class for level 1. Every value can be set from the environment (`LEVEL1_...`)."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.paths import state_dir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEVEL1_")

    state_dir: Path = Field(default_factory=lambda: state_dir() / "level1")
    seed: int = 42

    # The service.
    host: str = "127.0.0.1"  # loopback by default: exposing the service is a decision
    port: int = 8001
    # A larger body is refused with a 413 before it is read to the end.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # One line per request costs ~10% of throughput on this small model; off unless asked for.
    access_log: bool = False

    @property
    def artifacts_dir(self) -> Path:
        """Where `train` writes the model and its card."""
        return self.state_dir / "artifacts"

    @property
    def serving_dir(self) -> Path:
        """Where the service reads the model: filled by the hand-off step, never by training."""
        return self.state_dir / "serving"
