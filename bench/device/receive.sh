#!/usr/bin/env bash
# On the device tool's machine, once a call, each call carrying one part of bench/device/pack.sh's packing:
# keeps the part in $KIT (/tmp/sheldon-kit), which lasts while the machine stays warm. Once every part is there, it
# installs the packages beside the machine's own (torch with CUDA, transformers, peft) and runs bench/gpu.sh
# without the stack (the machine has no PostgreSQL or Redis); the figures come back from $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHON=${PYTHON:-python3}  # there, the interpreter that holds the CUDA build of torch
kit=${KIT:-/tmp/sheldon-kit}
# A new packing (other checksums) starts over: nothing of an earlier one is joined or run.
if [ -f "$kit/parts" ] && ! cmp --silent "$kit/parts" .device/parts; then
  rm -rf "$kit"
fi
mkdir -p "$kit"
cp .device/parts "$kit/parts"
mapfile -t names < <(awk '{print $2}' "$kit/parts")
# Keep this packing's parts that arrived whole. Only those: the machine keeps ignored files between calls, parts of
# other packings included, and a part broken in transfer stays there until a call carries it again.
broken=()
for name in "${names[@]}"; do
  if [ -f ".device/$name" ] && [ ! -f "$kit/$name" ]; then
    if grep " $name\$" "$kit/parts" | (cd .device && sha256sum --check --quiet --status); then
      cp ".device/$name" "$kit/$name"
    else
      broken+=("$name")
    fi
  fi
done
missing=()
for name in "${names[@]}"; do
  [ -f "$kit/$name" ] || missing+=("$name")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Have $(( ${#names[@]} - ${#missing[@]} )) of ${#names[@]} parts; carry ${missing[0]} next, while the machine is warm."
  if [ ${#broken[@]} -gt 0 ]; then
    echo "Not taken, their checksums differ (broken in transfer, or from another packing): ${broken[*]}."
  fi
  exit 0
fi
if [ ! -f "$kit/installed" ]; then
  rm -rf "$kit/kit" "$kit/site"
  for name in "${names[@]}"; do cat "$kit/$name"; done | tar -x -C "$kit"
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$kit/site" \
    "$kit"/kit/wheels/*.whl
  touch "$kit/installed"
fi
export PYTHONPATH="$kit/site${PYTHONPATH:+:$PYTHONPATH}" STACK=0
exec bash bench/gpu.sh
