#!/usr/bin/env bash
# Here, before a GPU run on the device tool's machine: packs what that machine lacks (the packages of
# bench/device/requirements.txt, for its Python) into parts small enough to travel one per call beside the
# working tree, which the tool limits to 64 MiB a call, tree included. Writes .device/part-NN and
# .device/parts (their checksums) and prints the calls to make; docs/inference.md ("The GPU run") tells the rest.
# DEVICE_PYTHON: the machine's Python version (3.12 there; the wheels with compiled code must match it).
# PART_BYTES: the size of a part (default: what fits beside this working tree in one call).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
DEVICE_PYTHON=${DEVICE_PYTHON:-3.12}
rm -rf .device
mkdir -p .device/kit/wheels
platforms=()
for tag in manylinux1 manylinux2014 manylinux_2_17 manylinux_2_27 manylinux_2_28 manylinux_2_34; do
  platforms+=(--platform "${tag}_x86_64")
done
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$DEVICE_PYTHON" \
  --implementation cp "${platforms[@]}" --dest .device/kit/wheels -r bench/device/requirements.txt
tar -C .device -cf .device/kit.tar kit
rm -rf .device/kit
# The working tree travels with every call: tracked files and untracked ones that git does not ignore.
# (A tracked file deleted here is listed but not sent: stat skips it.)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | { xargs -0 stat -c %s 2>/dev/null || true; } \
  | awk '{total += $1} END {print total + 0}')
part_bytes=${PART_BYTES:-$(( 64 * 1024 * 1024 - tree_bytes - 1024 * 1024 ))}  # a MiB spare for changes
split --bytes "$part_bytes" --numeric-suffixes=1 --suffix-length 2 .device/kit.tar .device/part-
rm .device/kit.tar
(cd .device && sha256sum part-* > parts)
count=$(wc -l < .device/parts)
echo "Packed $(du -ch .device/part-* | tail -1 | cut -f1) in $count parts beside a working tree of $(( tree_bytes / 1024 / 1024 )) MiB."
echo "Calls, each within 30 s of the one before (the machine stays warm that long); the last runs bench/gpu.sh:"
parts=(.device/part-*)
for part in "${parts[@]}"; do
  # The last call runs the checks (about 3 minutes expected): its limit leaves device time to run it again.
  timeout=$([ "$part" = "${parts[-1]}" ] && echo 360 || echo 120)
  echo "  run(command=\"bash bench/device/receive.sh\", carry=[\"$part\", \".device/parts\"], timeout_s=$timeout)"
done
