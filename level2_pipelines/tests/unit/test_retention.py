"""Retention keeps level 2's records bounded: old and surplus answers go with their feedback,
never the monitor's window nor feedback whose answer is still to be written; old and surplus
drift reports go, never the newest. On SQLite and on a real PostgreSQL database of its own."""

import os
import time
import uuid

import pytest
import sqlalchemy as sa

from level2_pipelines import prediction_log
from level2_pipelines.prediction_log import feedback, predictions, shadow_answers
from level2_pipelines.retention import DAY_S, prune, prune_prediction_log, prune_reports
from level2_pipelines.settings import Settings

NOW = 1_800_000_000.0


def answer(prediction_id: str, served_at: float) -> dict:
    return {
        "prediction_id": prediction_id,
        "served_at": served_at,
        "model_version": "1",
        "bill_length_mm": 40.0,
        "bill_depth_mm": 18.0,
        "flipper_length_mm": 190.0,
        "body_mass_g": 3700.0,
        "island": "Dream",
        "sex": "male",
        "predicted": "Adelie",
        "p_Adelie": 0.9,
        "p_Chinstrap": 0.05,
        "p_Gentoo": 0.05,
        "latency_ms": 1.0,
    }


def fill(engine: sa.Engine, ages_days: list[float], labelled: set[int] = frozenset()) -> None:
    """One answer per age (in days before NOW), named a0, a1, ...; feedback on `labelled`."""
    with engine.begin() as connection:
        connection.execute(
            predictions.insert(),
            [answer(f"a{i}", NOW - age * DAY_S) for i, age in enumerate(ages_days)],
        )
        if labelled:
            connection.execute(
                feedback.insert(),
                [
                    {"prediction_id": f"a{i}", "species": "Adelie", "received_at": NOW - 1}
                    for i in sorted(labelled)
                ],
            )


def ids(engine: sa.Engine, table: sa.Table) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(sa.select(table.c.prediction_id)).scalars())


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    """The prediction log's tables on SQLite, or in a PostgreSQL database made for the test."""
    if request.param == "sqlite":
        engine = prediction_log.open_engine(f"sqlite:///{tmp_path / 'log.db'}")
        yield engine
        engine.dispose()
        return
    from level2_pipelines.ops.team_postgres import connect, postgres_problem
    from level2_pipelines.ops.team_settings import TeamSettings

    team = TeamSettings()
    if (problem := postgres_problem(team)) is not None:
        pytest.skip(f"no PostgreSQL here: {problem}")
    name = f"test_retention_{uuid.uuid4().hex[:8]}"
    with connect(team) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    if team.pg_password is not None:
        os.environ.setdefault("PGPASSWORD", team.pg_password.get_secret_value())
    url = f"postgresql+psycopg://{team.pg_user}@{team.pg_host}:{team.pg_port}/{name}"
    engine = prediction_log.open_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        with connect(team) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_prune_removes_old_answers_and_their_feedback_but_keeps_the_window(engine):
    """Answers older than the retention age go with their feedback, except the monitor's
    window: the newest `monitor_window` answers stay whatever their age."""
    settings = Settings(retain_predictions_days=30, monitor_window=20)
    ages = [50.0] * 20 + [35.0] * 10 + [1.0] * 10  # a20-a29: old, but in the window
    fill(engine, ages, labelled={0, 1, 26, 35})

    removed = prune_prediction_log(engine, settings, NOW)

    assert removed == (20, 2)
    assert ids(engine, predictions) == {f"a{i}" for i in range(20, 40)}
    assert ids(engine, feedback) == {"a26", "a35"}


def test_prune_removes_a_challengers_answers_with_the_requests_they_answered(engine):
    """The challenger's unseen answers (`shadow_answers`) follow the answers of the same
    requests: the old go, those in the kept window stay."""
    settings = Settings(retain_predictions_days=30, monitor_window=20)
    fill(engine, [50.0] * 10 + [1.0] * 20)
    with engine.begin() as connection:
        connection.execute(
            shadow_answers.insert(),
            [
                {
                    "prediction_id": f"a{i}",
                    "served_at": NOW - (50.0 if i < 10 else 1.0) * DAY_S,
                    "model_version": "2",
                    "predicted": "Adelie",
                    "latency_ms": 1.0,
                    "champion_latency_ms": 1.0,
                }
                for i in range(30)
            ],
        )

    prune_prediction_log(engine, settings, NOW)

    assert (
        ids(engine, shadow_answers) == ids(engine, predictions) == {f"a{i}" for i in range(10, 30)}
    )


def test_prune_keeps_at_most_the_row_limit_newest_first(engine):
    """Beyond `retain_predictions_rows` the oldest answers go, young as they are."""
    settings = Settings(retain_predictions_rows=30, monitor_window=20)
    fill(engine, [1 + i / 100 for i in range(50)][::-1])  # a49 is the newest

    removed, _ = prune_prediction_log(engine, settings, NOW)

    assert removed == 20
    assert ids(engine, predictions) == {f"a{i}" for i in range(20, 50)}


def test_prune_never_cuts_into_the_monitors_window(engine):
    """A row limit under the window is overruled by it: the monitor needs its window."""
    settings = Settings(retain_predictions_rows=5, monitor_window=20)
    fill(engine, [2 - i / 100 for i in range(30)])  # a29 is the newest

    removed, _ = prune_prediction_log(engine, settings, NOW)

    assert removed == 10
    assert len(ids(engine, predictions)) == 20


def test_prune_keeps_feedback_whose_answer_is_not_written_yet(engine):
    """The service writes answers in the background: feedback may come first. It stays; an
    orphan older than the retention age (its answer long gone) goes."""
    settings = Settings(retain_predictions_days=30, monitor_window=20)
    with engine.begin() as connection:
        connection.execute(
            feedback.insert(),
            [
                {"prediction_id": "early", "species": "Gentoo", "received_at": NOW - 1},
                {"prediction_id": "gone", "species": "Gentoo", "received_at": NOW - 40 * DAY_S},
            ],
        )

    _, labels = prune_prediction_log(engine, settings, NOW)

    assert labels == 1
    assert ids(engine, feedback) == {"early"}


def test_prune_reports_by_age_and_count_keeps_the_newest_and_the_verdict(tmp_path):
    """Report folders past their age or count go; the newest, latest.json and asked.json stay."""
    monitor = tmp_path / "monitor"
    for day in range(1, 13):  # 12 reports, one a day, the newest first by name
        folder = monitor / f"202612{day:02d}T000000"
        folder.mkdir(parents=True)
        (folder / "drift.json").write_text("{}")
        old = NOW - (13 - day) * DAY_S
        os.utime(folder, (old, old))
    (monitor / "latest.json").write_text("{}")
    (monitor / "asked.json").write_text("{}")
    settings = Settings(retain_reports_days=7, retain_reports=5)

    removed = prune_reports(monitor, settings, NOW)

    left = sorted(p.name for p in monitor.iterdir())
    assert removed == 7
    assert left == [f"202612{day:02d}T000000" for day in range(8, 13)] + [
        "asked.json",
        "latest.json",
    ]
    # However old, the newest report stays.
    assert prune_reports(monitor, Settings(retain_reports_days=0.001), NOW + 365 * DAY_S) == 4
    assert (monitor / "20261212T000000").is_dir()


def test_retention_command_prunes_the_configured_log(tmp_path, monkeypatch, capsys):
    """`python -m level2_pipelines.retention` prunes the configured log and says what it removed."""
    from level2_pipelines import retention

    monkeypatch.setenv("LEVEL2_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LEVEL2_MONITOR_WINDOW", "20")
    engine = prediction_log.open_engine(Settings().resolved_prediction_log_uri)
    fill(engine, [(NOW - time.time()) / DAY_S + 40] * 25 + [0.0] * 20)
    engine.dispose()

    retention.main()

    assert prune(Settings()).predictions == 0  # done already
    assert "25 answers, 0 feedback rows and 0 drift reports removed" in capsys.readouterr().out
