#!/usr/bin/env bash
# The short load benchmark (called by `make bench`): the stack with one and
# two workers against the reference design, at 1, 4, 16 and 32 users.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sheldon}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
.venv/bin/python scripts/ensure_database.py
.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py bootstrap
exec .venv/bin/python bench/run.py --users 1 4 16 32 --messages 2 --max-new-tokens 40 --two-workers --two-web "$@"
