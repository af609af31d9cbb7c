#!/usr/bin/env bash
# Run the linter and the whole suite (called by `make test`). PostgreSQL and Redis are used
# where reachable; tests that need a missing service are skipped with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

if [ -z "${DATABASE_URL:-}" ] && reachable 127.0.0.1 5432; then
  export DATABASE_URL=postgres://postgres@127.0.0.1:5432/sheldon
fi
if [ -z "${REDIS_URL:-}" ] && reachable 127.0.0.1 6379; then
  export REDIS_URL=redis://127.0.0.1:6379/0
fi
echo "Database: ${DATABASE_URL:-embedded SQLite (PostgreSQL not reachable)}"
echo "Redis:    ${REDIS_URL:-not reachable: Redis, Celery and channel-layer tests are skipped}"

# Debian's Chromium for the browser tests (Playwright's own browser download is not used).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed and cannot be installed here: browser tests are skipped"
  fi
fi

# The linter first: a finding fails the run before the suite starts.
.venv/bin/ruff check .

mkdir -p test-output
.venv/bin/python -m pytest "$@"

# `make run` without PostgreSQL keeps everything in SQLite: the tests marked `sqlite` run there as well
# (after a whole run on another database; a run of chosen tests is left as asked).
if [ $# -eq 0 ] && [ -n "${DATABASE_URL:-}" ] && [[ "$DATABASE_URL" != sqlite* ]]; then
  echo "Again on the embedded SQLite database: the tests marked sqlite"
  DATABASE_URL="sqlite:///$(mktemp -d)/db.sqlite3" .venv/bin/python -m pytest -m sqlite -p no:cacheprovider
fi
