#!/bin/sh
# Run the whole test suite (the browser tests too) against a real PostgreSQL: the server
# LBPAY_TEST_DATABASE_URL names (CI's service container), else Debian's package started on
# loopback and stopped afterwards.
# Used by `make test-postgres`; needs root to install the package (or an installed PostgreSQL).
# Whole files go to TEST_WORKERS processes (pytest-xdist), the longest first, as in `make test`; each
# worker gets a database of its own on the server (tests/conftest.py), each test a schema in it.
set -eu
PY=${PY:-.venv/bin/python}
PORT=${PGPORT_FOR_TESTS:-54329}
WORKERS=${TEST_WORKERS:-4}

if [ -n "${LBPAY_TEST_DATABASE_URL:-}" ]; then
  exec "$PY" -m pytest -q -n "$WORKERS" --dist loadfile --no-loadscope-reorder "$@"
fi

if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  echo "installing postgresql from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
DATA=$(mktemp -d /tmp/lbpay-pg.XXXXXX)

# PostgreSQL refuses to run as root: run it as the postgres user the package created.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$DATA"

as_owner "$BIN/initdb" -D "$DATA" -U lbpay --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
  -o "-h 127.0.0.1 -p $PORT -k $DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" start >/dev/null \
  || { cat "$DATA/server.log" >&2; rm -rf "$DATA"; exit 1; }
trap 'as_owner "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null; rm -rf "$DATA"' EXIT INT TERM
"$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U lbpay lbpay_test

LBPAY_TEST_DATABASE_URL="postgresql://lbpay@127.0.0.1:$PORT/lbpay_test" \
  "$PY" -m pytest -q -n "$WORKERS" --dist loadfile --no-loadscope-reorder "$@"
