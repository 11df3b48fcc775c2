"""One settings class for level 2. Every value can be set from the environment (`LEVEL2_...`)."""

import contextlib
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from shared.paths import state_dir

# Tokens that appear in examples and tutorials are refused wherever they are configured.
PLACEHOLDER_TOKENS = frozenset({"", "change-me", "changeme", "secret", "admin", "token"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEVEL2_")

    state_dir: Path = Field(default_factory=lambda: state_dir() / "level2")
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
    # Safe rollout (`rollout.py`, `judge.py`): a candidate that passed the gate becomes champion
    # at once ("direct"), or `challenger` beside it: answering every request unseen ("shadow")
    # or `canary_share` of callers ("canary"), until the judge promotes or withdraws it on
    # live evidence: `rollout_min_confirmed` confirmed birds for each model, accuracy not
    # below the champion's by more than `rollout_tolerance`, at most `rollout_max_error_rate`
    # failed attempts, a p99 at most `rollout_max_latency_ratio` times the champion's.
    rollout: Literal["direct", "shadow", "canary"] = "direct"
    canary_share: float = Field(default=0.1, ge=0, le=1)
    rollout_min_confirmed: int = Field(default=30, ge=1)
    rollout_tolerance: float = Field(default=0.02, ge=0, le=1)
    rollout_max_error_rate: float = Field(default=0.01, ge=0, le=1)
    rollout_max_latency_ratio: float = Field(default=2.0, gt=1)
    rollout_judge_every_s: int = Field(default=300, ge=10)  # `penguins-rollout`'s interval
    min_batch_rows: int = 20
    retrain_cron: str = "0 3 * * *"  # the scheduled deployment: every day at 03:00
    work_pool: str | None = None  # where published deployments run; None: a serving runner
    # Where the work pool's workers have this code (the folder holding level2_pipelines/), named
    # in each published deployment: /app in the image. Unset: the publisher's own checkout,
    # right only when the workers share it (team mode on one machine).
    worker_code_dir: str | None = None

    # The service.
    host: str = "127.0.0.1"  # loopback by default: exposing the service is a decision
    port: int = 8002
    poll_seconds: float = Field(default=1.0, gt=0)  # how often it asks who is champion
    # Unset: the service makes a random one in `admin_token_file` (mode 0600), where the
    # pipeline and the registry commands on this machine read it. Set it to share across hosts.
    admin_token: SecretStr | None = None
    # A larger body is refused with a 413 before it is read to the end.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # One line per request costs ~10% of throughput on this small model; off unless asked for.
    access_log: bool = False
    # uvicorn worker processes, each with the model, its own prediction-log buffer and its own
    # metrics, which /metrics adds up (prometheus-client's multiprocess mode) when there are
    # several. One per core is the most that helps: a worker uses one core at most.
    workers: int = Field(default=1, ge=1)

    # Monitoring (Microsoft level 4): every answer is recorded for the drift monitor and for
    # the true species that comes back later (`POST /feedback`).
    prediction_log: bool = True
    # Unset: a SQLite file in the state folder; for a team, e.g. postgresql+psycopg2://...
    prediction_log_uri: str | None = None
    flush_every_s: float = Field(default=0.5, gt=0)  # how often recorded answers are written
    metrics_every_s: float = Field(default=5.0, gt=0)  # how often /metrics re-reads the log
    live_accuracy_window_s: float = Field(default=24 * 3600, gt=0)  # feedback counted this far
    # The incoming watcher (`make level2-up`): a landed file is taken once it has held still
    # (size and time) this long, and one over the size limit is set aside in the quarantine.
    incoming_settle_s: float = Field(default=2.0, ge=0)
    incoming_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # The drift monitor (`make level2-monitor`; every `monitor_every_s` with `make level2-up`).
    monitor_window: int = Field(default=200, ge=20)  # answers compared with the reference
    drift_alpha: float = Field(default=0.05, gt=0, lt=1)  # false alarms per clean window
    monitor_every_s: int = Field(default=60, ge=10)
    drift_cooldown_s: float = Field(default=600, ge=0)  # one retraining asked per champion per

    # Bounded waits on the dependencies (faults survived): no call waits for minutes.
    # Each MLflow request: this long for an answer, tried 1 + `mlflow_retries` times, waits
    # between tries of 0, 2, 4... s (tracking.py). Connection refused fails in ~3 s; a server
    # that never answers in (1 + retries) x timeout + the waits (~33 s with these).
    mlflow_timeout_s: int = Field(default=10, ge=1)
    mlflow_retries: int = Field(default=2, ge=0, le=10)
    # The service waits this long for its first champion before it listens; past it, it
    # listens anyway (/ready 503 naming what it waits for) and goes on trying.
    startup_wait_s: float = Field(default=30.0, ge=0)
    # A PostgreSQL prediction log: connecting, and each statement, give up after this long.
    prediction_log_timeout_s: int = Field(default=5, ge=1)
    # Answers kept in memory while the log's database is away; past it the oldest are
    # dropped and counted (penguins_prediction_log_dropped_rows on /metrics). ~1 KB each.
    prediction_log_max_pending: int = Field(default=200_000, ge=1)

    # Incoming retries and bounded growth (`watcher.py`, `retention.py`). A landed batch whose
    # run failed or crashed for a reason not the input's is sent again this many times in all,
    # then quarantined with the reason; each retry waits longer (backoff, capped).
    incoming_retries: int = Field(default=3, ge=1)
    incoming_retry_backoff_s: float = Field(default=10.0, ge=0)
    # Retention, applied daily by `penguins-retention/daily` (and `make level2-prune`): answers
    # older than this or beyond this many rows go, with their feedback, but never the monitor's
    # window; drift reports older than this or beyond this many go, the newest always stays.
    retain_predictions_days: float = Field(default=30.0, gt=0)
    retain_predictions_rows: int = Field(default=1_000_000, ge=1)
    retain_reports_days: float = Field(default=7.0, gt=0)
    retain_reports: int = Field(default=500, ge=1)
    retention_cron: str = "30 4 * * *"  # every day at 04:30, after the nightly retraining

    # Shared by every worker and the service (issue 21), never a container's own folder.
    # One decision at a time across hosts (`registry.decision`, `locks.py`): a PostgreSQL
    # advisory lock in this database (postgresql+psycopg://...). Unset: the prediction log's
    # database when that is PostgreSQL (team mode, compose, Kubernetes), else a file lock in the
    # state folder (one machine).
    decision_lock_uri: str | None = None
    decision_wait_s: float = Field(default=600, gt=0)  # a run takes seconds: longer is a stuck one
    # How long /metrics' background read of the monitor's latest verdict from the tracking
    # server may take; past it the last verdict read stays shown, marked stale.
    drift_verdict_timeout_s: float = Field(default=5.0, gt=0)

    # The workshop's local servers (`make level2-up`).
    prefect_port: int = 4200
    mlflow_ui_port: int = 5000

    # Secrets as files (Kubernetes and compose mount them here): a folder with a file per
    # setting, named like its variable (LEVEL2_ADMIN_TOKEN, LEVEL2_PREDICTION_LOG_URI...). A
    # worker's flow runs inherit its environment: this way they inherit a path, not the values.
    # The environment still wins over a file. Read from the environment only (see below).
    secrets_dir: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # pydantic-settings' own precedence, its secrets source pointed at LEVEL2_SECRETS_DIR:
        # the folder is known before any field is, so it is read from the environment.
        folder = os.environ.get("LEVEL2_SECRETS_DIR")
        if folder and not Path(folder).is_dir():
            # A mount that failed must not start a service without its token, silently.
            raise ValueError(f"LEVEL2_SECRETS_DIR={folder} is not a folder: is the secret mounted?")
        files = SecretsSettingsSource(settings_cls, secrets_dir=folder or None)
        return init_settings, env_settings, dotenv_settings, files

    @model_validator(mode="after")
    def _refuse_unusable_tokens(self) -> "Settings":
        token = self.admin_token.get_secret_value() if self.admin_token is not None else None
        if token is not None and token.strip().lower() in PLACEHOLDER_TOKENS:
            raise ValueError(
                "LEVEL2_ADMIN_TOKEN is a placeholder; set a random one "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))') or unset it"
            )
        if token is None and not _is_loopback(self.host):
            raise ValueError(
                f"LEVEL2_HOST={self.host} is reachable from other machines: set "
                "LEVEL2_ADMIN_TOKEN to a real token before binding it"
            )
        return self

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "admin_token"

    def admin_token_value(self, *, create: bool = False) -> str | None:
        """The configured token, else the one in `admin_token_file`; the service (`create`)
        writes a random one there, readable by its owner only. None: no token anywhere yet."""
        if self.admin_token is not None:
            return self.admin_token.get_secret_value()
        path = self.admin_token_file
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                # O_EXCL: two processes starting together cannot each write their own.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as file:
                    file.write(secrets.token_urlsafe(32))
        return path.read_text().strip() if path.exists() else None

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.state_dir / 'mlflow.db'}"

    @property
    def resolved_prediction_log_uri(self) -> str:
        return self.prediction_log_uri or f"sqlite:///{self.state_dir / 'predictions.db'}"

    @property
    def resolved_lock_uri(self) -> str | None:
        """The PostgreSQL database of the advisory locks; None: file locks in the state folder."""
        if self.decision_lock_uri is not None:
            return self.decision_lock_uri
        log = self.prediction_log_uri
        return log if log is not None and log.startswith("postgresql") else None

    @property
    def worker_metrics_dir(self) -> Path:
        """Where several workers' metrics meet (prometheus-client's multiprocess mode): one
        folder per port, so two services sharing a state folder never mix; emptied on start."""
        return self.state_dir / "worker-metrics" / f"port-{self.port}"

    @property
    def monitor_dir(self) -> Path:
        """The drift monitor's reports for a person to read (`latest.json`: its newest verdict);
        the verdict every process reads is the monitor's MLflow run (`monitor_runs.py`)."""
        return self.state_dir / "monitor"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Where a local MLflow store keeps run artifacts and model files (not a server's)."""
        return self.state_dir / "mlartifacts"

    @property
    def incoming_dir(self) -> Path:
        """Drop a CSV or Parquet batch here and the watcher starts a run."""
        return self.state_dir / "incoming"

    @property
    def references_dir(self) -> Path:
        """Reference rows downloaded from the tracking server, one folder per MLflow run."""
        return self.state_dir / "references"

    @property
    def batches_dir(self) -> Path:
        """Every batch that passed validation, kept by id for lineage."""
        return self.state_dir / "batches"

    @property
    def quarantine_dir(self) -> Path:
        """Every batch that failed validation, kept with the failed checks."""
        return self.state_dir / "quarantine"

    @property
    def decision_lock(self) -> Path:
        """The decision's file lock on one machine (`resolved_lock_uri` None)."""
        return self.state_dir / "decision.lock"

    @property
    def data_docs_dir(self) -> Path:
        return self.state_dir / "data_docs"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    # Batch scoring (`scoring.py`): `penguins-scoring/scheduled` scores the files of this folder
    # (unset: state/level2/to-score/) on this cron, each content once.
    scoring_dir: Path | None = None
    scoring_cron: str = "*/15 * * * *"  # every 15 minutes


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False
