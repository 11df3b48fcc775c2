"""Team mode's settings: where PostgreSQL is, the servers' ports, the workers, and the
environment that points level 2 at those servers (`environment()`: the only difference from
embedded mode the pipeline, the service and the monitor see).

A password goes to the processes in PGPASSWORD / PREFECT_SERVER_DATABASE_PASSWORD, never on a
command line and never printed.
"""

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from level2_pipelines.ops.processes import Processes
from shared.paths import state_dir


class TeamSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEVEL2_TEAM_")

    state_dir: Path = Field(default_factory=lambda: state_dir() / "team")
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: SecretStr | None = None
    pg_admin_db: str = "postgres"  # where `CREATE DATABASE` is sent from
    db_prefix: str = Field(default="penguins", pattern=r"^[a-z][a-z0-9_]*$")
    prefect_port: int = 4210
    mlflow_port: int = 5010
    service_port: int = 8012
    prometheus_port: int = 9090
    workers: int = Field(default=2, ge=1)
    work_pool: str = "penguins-pool"
    # How often an idle worker asks for runs (Prefect's default, 10 s, is a long wait in a demo).
    worker_poll_s: float = Field(default=2.0, gt=0)

    def database(self, purpose: str) -> str:
        return f"{self.db_prefix}_{purpose}"

    def database_uri(self, purpose: str, driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URI without the password: processes get it from PGPASSWORD."""
        return f"{driver}://{self.pg_user}@{self.pg_host}:{self.pg_port}/{self.database(purpose)}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.service_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def level2_state_dir(self) -> Path:
        """The level 2 state folder in team mode: token, incoming/, batches, monitor reports."""
        return self.state_dir / "level2"

    @property
    def processes(self) -> Processes:
        return Processes(self.state_dir / "servers")


def environment(team: TeamSettings) -> dict[str, str]:
    """This process's environment plus what makes level 2 run in team mode: the settings the
    pipeline, the service and the monitor read, pointed at the servers."""
    env = dict(os.environ)
    env.update(
        {
            "LEVEL2_STATE_DIR": str(team.level2_state_dir),
            "LEVEL2_TRACKING_URI": team.mlflow_url,
            "LEVEL2_PREDICTION_LOG_URI": team.database_uri("predictions"),
            "LEVEL2_WORK_POOL": team.work_pool,
            "LEVEL2_PORT": str(team.service_port),
            "PREFECT_API_URL": team.prefect_api_url,
            "PREFECT_HOME": str(team.state_dir / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": str(team.worker_poll_s),
            # Flow runs beat (= triggers.HEARTBEAT_S); a run silent past three beats is
            # marked Crashed by the automation `triggers --publish` makes.
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
        }
    )
    if team.pg_password is not None:
        env["PGPASSWORD"] = team.pg_password.get_secret_value()  # libpq reads it (psycopg)
    return env
