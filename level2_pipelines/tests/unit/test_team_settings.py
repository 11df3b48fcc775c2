"""Team mode's settings, without servers: only settings differ from embedded mode, every
process binds loopback, and a PostgreSQL password never reaches a command line."""

from level2_pipelines.ops import team
from level2_pipelines.settings import Settings

PASSWORD = "a-password-nobody-should-see"


def test_the_level_reads_team_mode_from_the_environment_alone(monkeypatch, tmp_path):
    monkeypatch.setenv("LEVEL2_TEAM_STATE_DIR", str(tmp_path))
    settings = team.TeamSettings()
    for name, value in team.environment(settings).items():
        monkeypatch.setenv(name, value)
    level2 = Settings()
    assert level2.resolved_tracking_uri == f"http://127.0.0.1:{settings.mlflow_port}"
    assert level2.resolved_prediction_log_uri.startswith("postgresql+psycopg://")
    assert level2.resolved_prediction_log_uri.endswith("/penguins_predictions")
    assert level2.work_pool == settings.work_pool
    assert level2.state_dir == tmp_path / "level2"
    assert level2.port == settings.service_port


def test_a_password_goes_to_the_environment_never_to_a_command_line(monkeypatch, tmp_path):
    monkeypatch.setenv("LEVEL2_TEAM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LEVEL2_TEAM_PG_PASSWORD", PASSWORD)
    settings = team.TeamSettings()
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.database_uri("mlflow")
    commands = team.commands(settings)
    for command, _, env in commands.values():
        assert not any(PASSWORD in part for part in command)
        assert env["PGPASSWORD"] == PASSWORD
    assert commands["prefect"][2]["PREFECT_SERVER_DATABASE_PASSWORD"] == PASSWORD


def test_every_server_binds_loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("LEVEL2_TEAM_STATE_DIR", str(tmp_path))
    commands = team.commands(team.TeamSettings())
    for name in ("mlflow", "prefect"):
        command = commands[name][0]
        assert command[command.index("--host") + 1] == "127.0.0.1"
    assert "LEVEL2_HOST" not in commands["service"][2] or (
        commands["service"][2]["LEVEL2_HOST"] == "127.0.0.1"
    )
    if "prometheus" in commands:  # only where its binary is installed
        assert "--web.listen-address=127.0.0.1:9090" in commands["prometheus"][0]
    for name, (_, health, _) in commands.items():
        assert health is None or health.startswith("http://127.0.0.1:"), name
