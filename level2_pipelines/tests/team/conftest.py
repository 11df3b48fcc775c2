"""What the team tests beside test_team.py share: a PostgreSQL database of their own, made for
the test and dropped after it (skipped, saying why, where there is no PostgreSQL)."""

import uuid

import pytest

from level2_pipelines.ops.team_postgres import connect, postgres_problem
from level2_pipelines.ops.team_settings import TeamSettings


@pytest.fixture
def new_database():
    """A function making fresh databases (name -> SQLAlchemy URI); all dropped at the end."""
    team = TeamSettings()
    problem = postgres_problem(team)
    if problem is not None:
        pytest.skip(f"needs PostgreSQL: {problem}")
    from psycopg import sql

    made = []

    def make(purpose: str) -> str:
        name = f"test_{purpose}_{uuid.uuid4().hex[:8]}"
        with connect(team) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return f"postgresql+psycopg://{team.pg_user}@{team.pg_host}:{team.pg_port}/{name}"

    yield make
    with connect(team) as connection:
        for name in made:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
