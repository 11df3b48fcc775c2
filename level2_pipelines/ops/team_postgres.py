"""Team mode's PostgreSQL: three databases, made if missing: `<prefix>_mlflow` (runs,
registry), `<prefix>_prefect` (flow runs, deployments, events), `<prefix>_predictions` (the
prediction log). psycopg is imported only here, when team mode asks for it."""

from level2_pipelines.ops.team_settings import TeamSettings

DATABASES = ("mlflow", "prefect", "predictions")


def connect(team: TeamSettings, database: str | None = None):
    import psycopg

    return psycopg.connect(
        host=team.pg_host,
        port=team.pg_port,
        user=team.pg_user,
        password=team.pg_password.get_secret_value() if team.pg_password else None,
        dbname=database or team.pg_admin_db,
        autocommit=True,  # CREATE/DROP DATABASE cannot run inside a transaction
        connect_timeout=5,
    )


def postgres_problem(team: TeamSettings) -> str | None:
    """Why PostgreSQL cannot be used (None: it can), in one line without the password."""
    import psycopg

    try:
        with connect(team) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return (
            f"PostgreSQL at {team.pg_host}:{team.pg_port} (user {team.pg_user}) "
            f"is not usable: {first}"
        )
    return None


def ensure_databases(team: TeamSettings) -> list[str]:
    """Create the team's databases that do not exist yet. Returns the ones created."""
    from psycopg import sql

    created = []
    with connect(team) as connection:
        for purpose in DATABASES:
            name = team.database(purpose)
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if found is None:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(name)
    return created


def drop_databases(team: TeamSettings) -> None:
    from psycopg import sql

    with connect(team) as connection:
        for purpose in DATABASES:
            name = sql.Identifier(team.database(purpose))
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
