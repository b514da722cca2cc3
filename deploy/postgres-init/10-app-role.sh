#!/bin/sh
# PostgreSQL init script (docker-entrypoint-initdb.d, runs once, when the data
# directory is first initialised): creates the role the clawgate services run
# as, CLAWGATE_APP_ROLE with password CLAWGATE_APP_PASSWORD. It has neither
# SUPERUSER nor BYPASSRLS, so row-level security applies to it; it owns
# nothing and gets data rights only, from `clawgate migrate --app-role`.
# Idempotent. The Helm chart's in-chart PostgreSQL runs the same script
# (helm/clawgate/templates/postgresql.yaml).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v role="$CLAWGATE_APP_ROLE" -v password="$CLAWGATE_APP_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L',
              :'role', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SQL
