#!/bin/sh
# The three databases of level 2 for a team, made once on an empty data volume (the postgres
# image runs /docker-entrypoint-initdb.d/ then; it sources a script that is not executable,
# so this one sets no shell options): MLflow's runs and registry, Prefect's state, and the
# prediction log. compose.yaml mounts this file; team mode makes the same databases.
for database in mlflow prefect predictions; do
  psql --set ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    --command "CREATE DATABASE \"${LEVEL2_TEAM_DB_PREFIX}_${database}\"" || exit 1
done
