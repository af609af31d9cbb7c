#!/usr/bin/env bash
# Set up and serve the product at http://127.0.0.1:8000 (called by `make run`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p var

$PY scripts/ensure_database.py
$PY manage.py migrate --noinput
$PY manage.py collectstatic --noinput -v 0
# Imports the transcripts, builds the retrieval index and the demo account;
# each step is skipped when nothing changed since the last run.
$PY manage.py bootstrap

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT
# Each process runs under scripts/supervise.sh: one that crashes is started
# again, and neither takes the other down.
if [ -n "${REDIS_URL:-}" ]; then
  echo "REDIS_URL is set: starting a Celery worker on queue ${GENERATION_QUEUE:-cpu}"
  scripts/supervise.sh worker .venv/bin/celery -A sheldonsite worker -Q "${GENERATION_QUEUE:-cpu}" --pool threads \
    --concurrency "${WORKER_CONCURRENCY:-8}" --loglevel INFO &
  pids+=($!)
else
  echo "REDIS_URL is not set: replies are generated inside the web process."
fi
echo "Serving the chat at http://${HOST:-127.0.0.1}:${PORT:-8000}"
scripts/supervise.sh web .venv/bin/daphne -b "${HOST:-127.0.0.1}" -p "${PORT:-8000}" sheldonsite.asgi:application &
pids+=($!)
wait -n "${pids[@]}"
