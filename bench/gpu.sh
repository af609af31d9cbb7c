#!/usr/bin/env bash
# The GPU path, in one run on a machine with an NVIDIA GPU: the CUDA tests, the engine alone at $ROWS rows
# (default 1 16 64), and, unless STACK=0, the full stack with its worker on the `gpu` queue at 1, 16 and 64
# users. Figures go to docs/bench/gpu/ (or $OUT when set, as on the device tool's machine).
# PYTHON: an interpreter with a CUDA build of torch and the project's packages (default .venv/bin/python).
# The stack needs PostgreSQL and Redis (started here when missing, as .ci/run does); the device tool's machine
# has neither, so bench/device/receive.sh runs this with STACK=0.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-.venv/bin/python}
out=${OUT:-docs/bench/gpu}/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
failed=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" || failed=1
# Each step runs even when one before it failed: a failing test still leaves the engine's figures to read.
"$PYTHON" -m pytest tests/serving/test_cuda.py -q -rs -p no:cacheprovider 2>&1 | tee "$out/cuda-test.txt" || failed=1
# shellcheck disable=SC2086  # ROWS is a list of numbers
"$PYTHON" bench/engine.py --engines torch-float32 --rows ${ROWS:-1 16 64} --new-tokens 40 --repeat 3 2>&1 \
  | tee "$out/engine.txt" || failed=1
if [ "${STACK:-1}" = 1 ]; then
  export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sheldon}
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
  { "$PYTHON" scripts/ensure_database.py && "$PYTHON" manage.py migrate --noinput -v 0 \
      && "$PYTHON" manage.py bootstrap \
      && "$PYTHON" bench/run.py --queue gpu --users 1 16 64 --messages 2 --max-new-tokens 40 --skip-reference \
           --output-dir "$out/stack"; } 2>&1 | tee "$out/stack.txt" || failed=1
fi
echo "Figures in $out"
exit $failed
