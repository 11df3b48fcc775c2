"""Level 2's compose file (infra/compose.yaml), read as data, in a second: team mode's topology
at team mode's ports, every image built here and pinned, a health check on everything that
stays up, ports on loopback only, the secrets only in the git-ignored .env and only where they
are used. `make test-compose` (tests/test_compose.py) runs it for real."""

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from level2_pipelines.ops.team_settings import TeamSettings
from level2_pipelines.settings import PLACEHOLDER_TOKENS, Settings

# The port the settings default to, whatever this process's environment sets (the README
# walkthrough moves it).
PORT = Settings.model_fields["port"].default

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE = INFRA / "compose.yaml"
SERVICES = {
    "postgres", "mlflow", "prefect-server", "publish", "watcher", "worker", "service", "prometheus",
}  # fmt: skip
LEVEL2_IMAGE = {"mlflow", "prefect-server", "publish", "watcher", "worker", "service"}
ONE_SHOT = {"publish"}  # registers the work pool and the deployments, then exits

# Team mode's defaults, by the environment variable that moves each: compose must agree.
TEAM_DEFAULTS = {
    f"LEVEL2_TEAM_{name.upper()}": field.default
    for name, field in TeamSettings.model_fields.items()
    if name
    in {
        "prefect_port",
        "mlflow_port",
        "service_port",
        "prometheus_port",
        "pg_user",
        "db_prefix",
        "workers",
        "work_pool",
    }
}
# Which service publishes which of team mode's ports, and the port inside its container.
PUBLISHED = {  # PostgreSQL is reached by the containers only
    "prefect-server": ("LEVEL2_TEAM_PREFECT_PORT", 4200),
    "mlflow": ("LEVEL2_TEAM_MLFLOW_PORT", 5000),
    "service": ("LEVEL2_TEAM_SERVICE_PORT", PORT),
    "prometheus": ("LEVEL2_TEAM_PROMETHEUS_PORT", 9090),
}
# `${NAME:-default}` and `${NAME:?message}`, compose's interpolation.
DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")
REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
CREDENTIALS = re.compile(r"://(?P<user>[^:/@\s]+):(?P<password>[^@\s]+)@")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def strings(node) -> list[str]:
    """Every string in the parsed file: values, list items, commands."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def defaults(text: str) -> dict[str, str]:
    return dict(DEFAULTED.findall(text))


def env_example() -> dict[str, str]:
    lines = (INFRA / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_compose_runs_team_modes_parts(compose):
    """PostgreSQL, MLflow's and Prefect's servers, the workers, the service and Prometheus."""
    assert set(compose["services"]) == SERVICES


def test_every_image_is_pinned_to_a_version(compose):
    for name, service in compose["services"].items():
        tag = service["image"].rsplit("/", 1)[-1].partition(":")[2]

        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {service['image']}"


def test_mlflow_and_prefect_servers_run_from_the_level_2_image(compose):
    """Client and server on the same version (the lock's), as Prefect asks and MLflow's
    registry calls assume: the servers run from the image the clients run from."""
    services = compose["services"]
    image = services["service"]["image"]

    for name in LEVEL2_IMAGE:
        assert services[name]["image"] == image, name
    assert services["mlflow"]["command"][:2] == ["mlflow", "server"]
    assert services["prefect-server"]["command"][:3] == ["prefect", "server", "start"]


def test_postgres_and_prometheus_are_built_from_debians_packages(compose):
    """No registry needed: their Dockerfiles install Debian's packages on BASE_IMAGE."""
    for name, package in (("postgres", "postgresql-15"), ("prometheus", "prometheus")):
        build = compose["services"][name]["build"]
        dockerfile = (INFRA / build["context"] / "Dockerfile").read_text()

        assert f"install --yes --no-install-recommends {package}" in dockerfile, name
        assert "ARG BASE_IMAGE=debian:bookworm-slim" in dockerfile, name
        assert build["args"]["BASE_IMAGE"] == "${BASE_IMAGE:-debian:bookworm-slim}", name


def test_every_lasting_service_has_a_health_check(compose):
    """Each service that stays up says when it is healthy; only the one-shot step does not."""
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            continue

        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service["restart"] == "unless-stopped", name


def test_ports_are_on_loopback_at_team_modes_ports(compose):
    """Published on 127.0.0.1 only, each at the LEVEL2_TEAM_* port team mode uses by default."""
    published = {n: s["ports"] for n, s in compose["services"].items() if "ports" in s}

    assert set(published) == set(PUBLISHED)
    for name, (variable, inside) in PUBLISHED.items():
        (port,) = published[name]
        assert port == f"127.0.0.1:${{{variable}:-{TEAM_DEFAULTS[variable]}}}:{inside}", name


def test_every_team_setting_has_team_modes_default(compose):
    """Wherever the file names a LEVEL2_TEAM_* variable, its default is team mode's."""
    found: dict[str, set[str]] = {}
    for text in strings(compose):
        for variable, default in defaults(text).items():
            found.setdefault(variable, set()).add(default)

    for variable, values in found.items():
        if variable.startswith("LEVEL2_TEAM_"):
            assert values == {str(TEAM_DEFAULTS[variable])}, variable
    assert set(TEAM_DEFAULTS) <= set(found)


def test_each_server_has_its_database(compose):
    """MLflow, Prefect and the prediction log each on their own PostgreSQL database."""
    services = compose["services"]
    urls = {
        "mlflow": services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"],
        "prefect": services["prefect-server"]["environment"][
            "PREFECT_SERVER_DATABASE_CONNECTION_URL"
        ],
        "predictions": services["service"]["environment"]["LEVEL2_PREDICTION_LOG_URI"],
    }

    for database, url in urls.items():
        assert url.endswith(f"@postgres:5432/${{LEVEL2_TEAM_DB_PREFIX:-penguins}}_{database}")
    assert urls["prefect"].startswith("postgresql+asyncpg://")
    assert services["worker"]["environment"]["LEVEL2_PREDICTION_LOG_URI"] == urls["predictions"]


def test_mlflow_server_keeps_and_proxies_the_artifacts(compose):
    command = compose["services"]["mlflow"]["command"]

    assert "--serve-artifacts" in command
    assert "--artifacts-destination=/home/app/state/mlartifacts" in command
    assert "mlflow-artifacts:/home/app/state" in compose["services"]["mlflow"]["volumes"]


def test_workers_poll_the_pool_the_deployments_are_published_to(compose):
    worker, publish = compose["services"]["worker"], compose["services"]["publish"]
    pool = worker["command"][worker["command"].index("--pool") + 1]

    assert pool == worker["environment"]["LEVEL2_WORK_POOL"]
    assert publish["environment"]["LEVEL2_WORK_POOL"] == pool
    assert "--publish" in publish["command"][-1]
    assert "--with-healthcheck" in worker["command"]
    assert worker["deploy"]["replicas"] == "${LEVEL2_TEAM_WORKERS:-2}"


def test_the_worker_finds_the_service_and_mlflow(compose):
    """The deploy stage asks the service to reload at LEVEL2_HOST:LEVEL2_PORT."""
    worker = compose["services"]["worker"]["environment"]

    assert worker["LEVEL2_HOST"] == "service"
    assert worker["LEVEL2_PORT"] == str(PORT)
    assert worker["LEVEL2_TRACKING_URI"] == "http://mlflow:5000"
    assert worker["PREFECT_API_URL"] == "http://prefect-server:4200/api"


def test_the_image_is_built_from_the_levels_dockerfile(compose):
    for name in LEVEL2_IMAGE:
        build = compose["services"][name]["build"]

        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file(), name


def test_prometheus_scrapes_the_services_metrics():
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())

    (job,) = config["scrape_configs"]

    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"] == [{"targets": [f"service:{PORT}"]}]


def test_no_secret_is_written_in_the_compose_file(compose):
    """Passwords are `${...}` from .env; the admin token is not in the file at all."""
    for text in strings(compose):
        for match in CREDENTIALS.finditer(text):
            assert REQUIRED.fullmatch(match["password"]), text
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"TOKEN|PASSWORD|SECRET", key) and not key.endswith("_FILE"):
                assert REQUIRED.fullmatch(str(value)), f"{name}: {key}"


def test_only_the_service_and_the_workers_hold_the_token(compose):
    """The service checks it, the workers' deploy stage sends it; nothing else gets it."""
    holders = {
        name
        for name, service in compose["services"].items()
        if "LEVEL2_ADMIN_TOKEN" in (service.get("environment") or {})
    }

    assert holders == {"service", "worker"}


def test_the_database_password_reaches_postgres_as_a_file(compose):
    postgres = compose["services"]["postgres"]

    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/pg_password"
    assert postgres["secrets"] == ["pg_password"]
    assert "POSTGRES_PASSWORD" not in postgres["environment"]


def test_env_example_names_every_secret_with_a_value_that_is_refused(compose):
    """Each variable compose requires is in .env.example, empty (compose refuses it) or a
    placeholder the level 2 settings refuse; the token is one of those."""
    required = {m for text in strings(compose) for m in re.findall(r"\$\{(\w+):\?", text)}
    example = env_example()

    assert required | {"LEVEL2_ADMIN_TOKEN"} <= set(example)
    for variable, value in example.items():
        assert value == "" or value.lower() in PLACEHOLDER_TOKENS, variable
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(admin_token=example["LEVEL2_ADMIN_TOKEN"])


def test_the_env_file_is_git_ignored():
    ignored = (INFRA / ".gitignore").read_text().splitlines()

    assert ".env" in ignored


def test_flow_runs_beat_where_the_workers_run_as_the_automation_expects(compose, tmp_path):
    """A run whose worker is lost is marked Crashed after three missed heartbeats
    (`triggers.crash_unresponsive_runs`): every place a worker runs sets the beat it counts."""
    from level2_pipelines import triggers
    from level2_pipelines.ops.team_settings import environment

    beat = str(triggers.HEARTBEAT_S)
    config = yaml.safe_load((INFRA / "k8s" / "config.yaml").read_text())

    assert compose["services"]["worker"]["environment"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat
    assert config["data"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat
    team = TeamSettings(state_dir=tmp_path)
    assert environment(team)["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == beat
