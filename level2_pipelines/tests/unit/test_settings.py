"""Secrets as files: Kubernetes and compose mount them; a worker's flow runs inherit its
environment, so what they inherit is a folder's path, never the values."""

import pytest
from pydantic import ValidationError

from level2_pipelines.settings import Settings

TOKEN = "a-token-from-a-mounted-file-nobody-guesses"


@pytest.fixture
def secrets(tmp_path, monkeypatch):
    folder = tmp_path / "secrets"
    folder.mkdir()
    for name in ("LEVEL2_ADMIN_TOKEN", "LEVEL2_PREDICTION_LOG_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEVEL2_SECRETS_DIR", str(folder))
    return folder


def test_settings_are_read_from_files_named_like_their_variables(secrets):
    (secrets / "LEVEL2_ADMIN_TOKEN").write_text(TOKEN + "\n")  # as `kubectl` or an editor writes
    (secrets / "LEVEL2_PREDICTION_LOG_URI").write_text("postgresql+psycopg://u:p@db/log")

    settings = Settings()

    assert settings.admin_token_value() == TOKEN
    assert settings.prediction_log_uri == "postgresql+psycopg://u:p@db/log"


def test_the_environment_wins_over_a_file(secrets, monkeypatch):
    """One precedence everywhere (pydantic-settings'): arguments, environment, then files."""
    (secrets / "LEVEL2_ADMIN_TOKEN").write_text(TOKEN)
    monkeypatch.setenv("LEVEL2_ADMIN_TOKEN", "another-token-nobody-guesses-either")

    assert Settings().admin_token_value() == "another-token-nobody-guesses-either"


def test_a_placeholder_in_a_file_is_refused_as_in_the_environment(secrets):
    (secrets / "LEVEL2_ADMIN_TOKEN").write_text("change-me")

    with pytest.raises(ValidationError, match="LEVEL2_ADMIN_TOKEN is a placeholder"):
        Settings()


def test_a_secrets_dir_that_is_not_there_is_a_clear_error(secrets, monkeypatch):
    """A mount that failed must not start a service without its token, silently."""
    monkeypatch.setenv("LEVEL2_SECRETS_DIR", str(secrets / "missing"))

    with pytest.raises(ValueError, match=r"LEVEL2_SECRETS_DIR.*missing.*not a folder"):
        Settings()
