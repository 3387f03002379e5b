#!/usr/bin/env bash
# Prepares what a GPU machine with no network needs for scripts/gpu-check.sh beyond the working tree: the
# cached TensorRT header sets (scripts/check-tensorrt.sh's cache), copied into .device/ (ignored by git, never
# committed). Prints the command to run there, with .device as the folder to take along.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${OCRNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocrnet-edge}"
rm -rf .device
mkdir -p .device
n=0
for d in "$cache"/tensorrt-*/include; do
    [ -f "$d/NvInferRuntime.h" ] || continue
    set_dir=.device/$(basename "$(dirname "$d")")
    mkdir -p "$set_dir"
    cp -r "$d" "$set_dir/include"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "device-bundle: no TensorRT header set in $cache (see scripts/check-tensorrt.sh)" >&2; exit 1; }
echo "device-bundle: $n header set(s) in .device/ ($(du -sh .device | cut -f1)); carry .device and run:"
echo '  OCRNET_CACHE=.device scripts/gpu-check.sh "$OUT"'
