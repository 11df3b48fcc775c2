#!/bin/sh
# Start PostgreSQL; on an empty data folder first make the cluster and level 2's databases.
# The password comes from a file (a compose or Kubernetes secret, POSTGRES_PASSWORD_FILE) so it
# is never in the environment of what runs here, nor on a command line.
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  test -s "${POSTGRES_PASSWORD_FILE:?}" || { echo "postgres: $POSTGRES_PASSWORD_FILE is empty" >&2; exit 1; }
  # Connections from other containers need the password; the socket inside this one does not.
  initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$POSTGRES_PASSWORD_FILE" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # Listening on the socket only while the databases are made: nobody connects half-way.
  pg_ctl --wait --options="-c listen_addresses=''" start
  databases.sh
  pg_ctl --wait --mode=fast stop
fi
exec postgres -c listen_addresses='*'
