#!/bin/bash
# A small subset of the official postgres image's entrypoint: on first start
# initialise $PGDATA with POSTGRES_USER / POSTGRES_PASSWORD and create
# POSTGRES_DB, then run the server listening on all addresses.
set -euo pipefail
export PGDATA=${PGDATA:-/var/lib/postgresql/data}
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"

if [ "$(id -u)" = 0 ]; then
	mkdir -p "$PGDATA" /run/postgresql
	chown -R postgres:postgres "$PGDATA" /run/postgresql
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "${1:-}" = postgres ]; then
	shift
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		if [ -z "${POSTGRES_PASSWORD:-}" ]; then
			echo "entrypoint: POSTGRES_PASSWORD must be set" >&2
			exit 1
		fi
		pwfile=$(mktemp)
		printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
		initdb -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 \
			--auth-local=trust --auth-host=scram-sha-256 >/dev/null
		rm -f "$pwfile"
		echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
		pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=/run/postgresql" start >/dev/null
		if [ "$POSTGRES_DB" != postgres ]; then
			psql -v ON_ERROR_STOP=1 -h /run/postgresql -U "$POSTGRES_USER" -d postgres \
				-c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
		fi
		pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
		echo "entrypoint: database initialised" >&2
	fi
	exec postgres -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@"
fi
exec "$@"
