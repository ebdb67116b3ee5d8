#!/usr/bin/env bash
# A throwaway PostgreSQL for the fleet tests: `source .ci/postgres.sh` (CI) or run it and eval its
# output (a developer). Starts a server in a temp folder on a random loopback port with fsync off,
# exports AGENTSESS_TEST_PG_DSN, and stops it when the sourcing shell exits (EXIT trap).
#   .ci/postgres.sh start   -> prints `export AGENTSESS_TEST_PG_DSN=… AGENTSESS_TEST_PG_PASSWORD=… AGENTSESS_TEST_PG_DIR=…`
#   .ci/postgres.sh stop DIR
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return 0; }; done
  return 1
}

pg_start() {
  local bin dir port password as=()
  if ! bin=$(pg_bin); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      (apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1; })
    fi
    bin=$(pg_bin) || { echo "postgres.sh: no PostgreSQL server installed (apt-get install postgresql)" >&2; return 1; }
  fi
  dir=$(mktemp -d /tmp/agentsess-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; as=(runuser -u postgres --); fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  printf '%s\n' "$password" >"$dir/pw" && chmod 600 "$dir/pw" && [ "$(id -u)" = 0 ] && chown postgres: "$dir/pw"
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U agentsess -A scram-sha-256 --pwfile="$dir/pw" --no-sync -E UTF8 \
    >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  rm -f "$dir/pw"
  # the DSN carries no password: tests hand it over through PGPASSFILE or the keyring, as users do
  echo "export AGENTSESS_TEST_PG_DSN='postgresql://agentsess@127.0.0.1:$port/postgres';" \
    "export AGENTSESS_TEST_PG_PASSWORD='$password'; export AGENTSESS_TEST_PG_DIR='$dir'"
}

pg_stop() {
  local dir=$1 bin as=()
  [ -n "$dir" ] && [ -d "$dir/data" ] || return 0
  bin=$(pg_bin) || return 0
  [ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
  rm -rf "$dir"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-start}" in
    start) pg_start ;;
    stop) pg_stop "${2:-${AGENTSESS_TEST_PG_DIR:-}}" ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
  esac
else
  if out=$(pg_start); then
    eval "$out"
    trap 'pg_stop "$AGENTSESS_TEST_PG_DIR"' EXIT
  else
    echo "postgres.sh: could not start PostgreSQL; PostgreSQL tests will fail (AGENTSESS_REQUIRE_PG=1)" >&2
  fi
fi
