#!/bin/sh
# The three databases of level 2 for a team, made once on an empty cluster (entrypoint.sh):
# MLflow's runs and registry, Prefect's state, and the prediction log. Team mode makes the same
# databases (ops/team_postgres.py).
set -eu
for database in mlflow prefect predictions; do
  psql --set ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    --command "CREATE DATABASE \"${LEVEL2_TEAM_DB_PREFIX:-penguins}_${database}\""
done
