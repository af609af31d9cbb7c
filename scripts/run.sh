#!/usr/bin/env bash
# Set up and serve the product at http://$HOST:$PORT, 127.0.0.1:8000 by default (called by `make run`).
# Prints "Sheldon is ready" once the port answers and the models are loaded; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
mkdir -p var
# Before any set-up step, so a second `make run` says so at once.
$PY scripts/readiness.py port-free "$HOST" "$PORT"

$PY scripts/ensure_database.py
# Migrates, collects the static files, imports the transcripts, builds the retrieval index
# and the demo account, in one process; each step is skipped when nothing changed since the last run.
$PY manage.py bootstrap --migrate --collectstatic

# A pool of database connections per process (PostgreSQL only; ignored on SQLite).
export DB_POOL_MAX_SIZE=${DB_POOL_MAX_SIZE:-16}
started=$(date +%s)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
# Each process runs under scripts/supervise.sh: one that crashes is started
# again, and neither takes the other down.
if [ -n "${REDIS_URL:-}" ]; then
  echo "REDIS_URL is set: starting a Celery worker on queue ${GENERATION_QUEUE:-cpu}"
  scripts/supervise.sh worker .venv/bin/celery -A sheldonsite worker -Q "${GENERATION_QUEUE:-cpu}" --pool threads \
    --concurrency "${WORKER_CONCURRENCY:-32}" --loglevel INFO &
  pids+=($!)
else
  echo "REDIS_URL is not set: replies are generated inside the web process."
fi
echo "Starting the web server on http://$HOST:$PORT and loading the models…"
scripts/supervise.sh web .venv/bin/daphne -b "$HOST" -p "$PORT" sheldonsite.asgi:application &
pids+=($!)
if $PY scripts/readiness.py wait "$HOST" "$PORT" "$started"; then
  echo "Sheldon is ready: http://$HOST:$PORT  (stop with Ctrl-C; a staff account for /admin/: make admin)"
fi
wait -n "${pids[@]}"
