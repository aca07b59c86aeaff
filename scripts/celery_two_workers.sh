#!/usr/bin/env bash
# Proves that resuming an upload needs no state on the worker: Airflow 3.3 with the CeleryExecutor, a
# Redis broker, PostgreSQL, and two Celery workers with directories of their own. Try 1 of the daily-load
# example's upload runs on one worker and is killed mid-transfer, with that worker stopped; try 2 runs on
# the other worker and resumes the same resumable session (scripts/celery/two_workers.py checks it).
# The emulator enforces Redivis's request limit (100 per 100 s per token): the proof reports the API
# requests it spent and fails on any 429, and unless every task but the killed upload succeeds on try 1.
#
#   scripts/celery_two_workers.sh [--record] [--keep]
#     --record  write the result to scripts/celery_last_run.md
#     --keep    keep the run directory (Airflow home, service logs, each worker's task logs)
#
# What it sets up, each time from scratch except the venv:
# - Debian packages redis-server and postgresql, installed with apt-get when missing (needs root).
# - A venv of its own, dev/setup-venvs' 'celery' environment (Airflow 3.3.2, apache-airflow-providers-celery
#   3.26.0 with celery 5.6, psycopg2-binary and asyncpg for PostgreSQL, this provider and the emulator
#   editable, every version pinned by constraints/celery-py*.txt) at $REDIVIS_CELERY_WORKDIR/celery (default
#   ${TMPDIR:-/tmp}/redivis-celery), reused while those are unchanged. Not .venv: the test environment
#   stays without Celery.
# - A throwaway PostgreSQL cluster (the metadata database and Celery's result backend) and a Redis
#   without persistence (the broker), both on 127.0.0.1 and free ports, stopped on exit.
# Everything listens on 127.0.0.1; every process started here is stopped on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

RECORD=0
KEEP=0
for arg in "$@"; do
  case $arg in
    --record) RECORD=1 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: $0 [--record] [--keep]" >&2; exit 2 ;;
  esac
done

AIRFLOW_VERSION=3.3.2
WORK=${REDIVIS_CELERY_WORKDIR:-${TMPDIR:-/tmp}/redivis-celery}
VENV=$WORK/celery
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
SECONDS=0
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# -- system packages --------------------------------------------------------------------------------
find_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if ! command -v redis-server >/dev/null || [ -z "$(find_pg_bin)" ]; then
  say "installing redis-server and postgresql (Debian packages)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "redis-server or PostgreSQL is missing and this is not root: apt-get install -y redis-server postgresql" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server postgresql >/dev/null
fi
PG_BIN=$(find_pg_bin)

# -- venv -------------------------------------------------------------------------------------------
# dev/setup-venvs' 'celery' environment, from its pinned versions (constraints/celery-py*.txt); rebuilt only
# when they, pyproject.toml or the set-up script change.
mkdir -p "$WORK"
say "setting up $VENV (Airflow $AIRFLOW_VERSION + Celery provider, pinned); log in $WORK/venv-setup.log"
if ! REDIVIS_VENV_ROOT=$WORK bash dev/setup-venvs celery >"$WORK/venv-setup.log" 2>&1; then
  tail -n 30 "$WORK/venv-setup.log" >&2
  exit 1
fi
PY=$VENV/bin/python

# -- services ---------------------------------------------------------------------------------------
RUN=$(mktemp -d "$WORK/run-$(date +%Y%m%dT%H%M%S)-XXXX")
chmod 755 "$RUN"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# PostgreSQL refuses to run as root: as root, its cluster belongs to the postgres user.
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

REDIS_PID=
PG_DATA=$RUN/postgres
cleanup() {
  local status=$?
  if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$REDIS_PID" 2>/dev/null || true
  fi
  if [ -f "$PG_DATA/postmaster.pid" ]; then
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -t 30 >/dev/null 2>&1 || true
  fi
  if [ "$KEEP" = 1 ]; then say "kept $RUN"; else rm -rf "$RUN"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PG_PORT=$(free_port)
mkdir -p "$PG_DATA"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_DATA"; fi
say "PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT"
as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U airflow --auth=trust -E UTF8 --no-sync >"$RUN/initdb.log" 2>&1 ||
  { cat "$RUN/initdb.log" >&2; exit 1; }
# A throwaway cluster: no durability wanted, only speed.
as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -w -t 60 -l "$PG_DATA/server.log" \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  >/dev/null || { cat "$PG_DATA/server.log" >&2; exit 1; }
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U airflow airflow

REDIS_PORT=$(free_port)
say "Redis on 127.0.0.1:$REDIS_PORT, no persistence"
mkdir -p "$RUN/redis"
setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$RUN/redis" \
  --daemonize no --logfile "$RUN/redis/redis.log" &
REDIS_PID=$!
for _ in $(seq 100); do
  [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
  sleep 0.1
done
[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || { cat "$RUN/redis/redis.log" >&2; exit 1; }

# -- the proof --------------------------------------------------------------------------------------
COMMAND="scripts/celery_two_workers.sh $*"
say "running scripts/celery/two_workers.py in $RUN"
set +e
"$PY" scripts/celery/two_workers.py --run-dir "$RUN" \
  --database "postgresql+psycopg2://airflow@127.0.0.1:$PG_PORT/airflow" \
  --broker "redis://127.0.0.1:$REDIS_PORT/0" \
  --summary "$RUN/summary.md" 2>&1 | tee "$RUN/output.log"
status=${PIPESTATUS[0]}
set -e
say "finished in $SECONDS s with status $status"

if [ "$RECORD" = 1 ]; then
  # The files this proof runs; other work in progress in the tree does not change its result.
  PROOF_FILES=(airflow_provider_redivis emulator example_dags tests/e2e scripts/celery scripts/celery_two_workers.sh pyproject.toml)
  {
    echo "# Last run of scripts/celery_two_workers.sh"
    echo
    echo "- date: $STARTED_AT"
    echo "- command: \`$COMMAND\`"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(changed=$(git diff --name-only HEAD -- "${PROOF_FILES[@]}" 2>/dev/null | paste -sd, -); [ -z "$changed" ] || echo " with uncommitted changes to $changed")"
    echo "- Airflow $AIRFLOW_VERSION, $("$PY" -m pip show apache-airflow-providers-celery 2>/dev/null | sed -n 's/^Version: /apache-airflow-providers-celery /p'), $(redis-server --version | cut -d' ' -f1-3), PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}')"
    echo "- duration: $SECONDS s, setting up or checking the venv included"
    echo "- result: $([ "$status" = 0 ] && echo PASSED || echo "FAILED (exit $status)")"
    echo
    echo "## What was seen"
    echo
    cat "$RUN/summary.md" 2>/dev/null || echo "- no summary written"
    echo
    echo "## Output"
    echo
    echo '```'
    grep -E '^\[[0-9:]+\]' "$RUN/output.log" || true
    echo '```'
  } >scripts/celery_last_run.md
  say "recorded in scripts/celery_last_run.md"
fi
exit "$status"
