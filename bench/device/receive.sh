#!/usr/bin/env bash
# On the device tool's machine, once a call, each call carrying one part of bench/device/pack.sh's packing:
# keeps the part in $KIT (/tmp/sheldon-kit), which lasts while the machine stays warm. Once every part is there, it
# installs the packages beside the machine's own (torch with CUDA, transformers, peft) and runs bench/gpu.sh
# without the stack (the machine has no PostgreSQL or Redis); the figures come back from $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHON=${PYTHON:-python3}  # there, the interpreter that holds the CUDA build of torch
kit=${KIT:-/tmp/sheldon-kit}
mkdir -p "$kit"
cp .device/part-* .device/parts "$kit"/
expected=$(wc -l < "$kit/parts")
if ! (cd "$kit" && sha256sum --check --quiet --status parts 2>/dev/null); then
  echo "Have $(find "$kit" -name 'part-*' | wc -l) of $expected parts: carry the next one while the machine is warm."
  exit 0
fi
if [ ! -d "$kit/site" ]; then
  cat "$kit"/part-* | tar -x -C "$kit"
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$kit/site" \
    "$kit"/kit/wheels/*.whl
fi
export PYTHONPATH="$kit/site${PYTHONPATH:+:$PYTHONPATH}" STACK=0
exec bash bench/gpu.sh
