#!/usr/bin/env bash
# The GPU path, in one run on a machine with an NVIDIA GPU: the CUDA test, the engine alone at 1/16/64
# rows, and the full stack with its worker on the `gpu` queue at 1, 16 and 64 users. Figures go to
# docs/bench/gpu/ (or $OUT when set, as on the device machine). Needs PostgreSQL and Redis (started
# here when missing, as .ci/run does) and a CUDA build of torch in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-docs/bench/gpu}/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv"
.venv/bin/python -m pytest tests/serving/test_cuda.py -q -rs 2>&1 | tee "$out/cuda-test.txt"
.venv/bin/python bench/engine.py --engines torch-float32 --rows 1 16 64 --new-tokens 40 --repeat 3 2>&1 \
  | tee "$out/engine.txt"
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sheldon}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
.venv/bin/python scripts/ensure_database.py
.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py bootstrap
.venv/bin/python bench/run.py --queue gpu --users 1 16 64 --messages 2 --max-new-tokens 40 --skip-reference \
  --output-dir "$out/stack" 2>&1 | tee "$out/stack.txt"
nvidia-smi --query-gpu=memory.used --format=csv >> "$out/gpu.csv"
echo "Figures in $out"
