#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the scoring tests and print its URL.
#
#   export EHRTEXT_TEST_POSTGRES_URL="$(bash scripts/start_test_postgres.sh)"
#
# Installs Debian's postgresql package when no server binaries are found (needs root), creates
# a cluster in a temporary folder (initdb, trust authentication, 127.0.0.1 only), starts it with
# pg_ctl as the `postgres` user (PostgreSQL refuses to run as root) and creates the database
# `ehrtext_test`. Progress goes to stderr; stdout is only the URL. Stop it with
#   pg_ctl -D "$EHRTEXT_TEST_POSTGRES_DIR/data" stop    (the folder is printed on stderr).
set -euo pipefail
PORT="${EHRTEXT_TEST_POSTGRES_PORT:-55432}"
# Take the next free port if that one is in use (another server, an earlier run).
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then PORT=$((PORT + 1)); else break; fi
done

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  done
  return 1
}

if ! BIN="$(find_bin)"; then
  echo "start_test_postgres: installing postgresql from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  SUDO=()
  if [ "$(id -u)" != "0" ]; then SUDO=(sudo -E); fi
  "${SUDO[@]}" apt-get update -q >&2
  # the package's own cluster is not needed (containers have no init system to start it)
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends postgresql >&2
  BIN="$(find_bin)" || { echo "start_test_postgres: no initdb after installing" >&2; exit 1; }
fi

DIR="$(mktemp -d /tmp/ehrtext-pg.XXXXXX)"
RUN=()
if [ "$(id -u)" = "0" ]; then
  chown postgres "$DIR"
  RUN=(runuser -u postgres --)
fi
"${RUN[@]}" "$BIN/initdb" -D "$DIR/data" -A trust -U postgres >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; exit 1; }
"${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1" start >&2 \
  || { cat "$DIR/server.log" >&2; exit 1; }
"$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE ehrtext_test" >&2
echo "start_test_postgres: server in $DIR on 127.0.0.1:$PORT" >&2
echo "postgresql://postgres@127.0.0.1:$PORT/ehrtext_test"
