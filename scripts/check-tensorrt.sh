#!/usr/bin/env bash
# Compile-checks the TensorRT plugin library against TensorRT headers (no TensorRT library needed), builds
# libocrnet_plugins.so and the plugin harness, and runs the harness: host checks everywhere, enqueue on the GPU
# when there is one.
#
#   TENSORRT_INCLUDE_DIR=/path/to/TensorRT/include scripts/check-tensorrt.sh     # one header set
#   scripts/check-tensorrt.sh                                                    # every cached header set
#
# Cache of header sets (outside the repository, never committed):
#   ${OCRNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocrnet-edge}/tensorrt-<version>/include
# e.g. from a clone of NVIDIA/TensorRT (Apache-2.0):
#   git -C TensorRT archive release/10.3 include | tar -x -C "$cache/tensorrt-10.3"
# With neither, it says so and exits 0: the default (CPU) crate needs none of this.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${OCRNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocrnet-edge}"

sets=()
if [ -n "${TENSORRT_INCLUDE_DIR:-}" ]; then
    [ -f "$TENSORRT_INCLUDE_DIR/NvInferRuntime.h" ] || { echo "check-tensorrt: no NvInferRuntime.h in TENSORRT_INCLUDE_DIR=$TENSORRT_INCLUDE_DIR" >&2; exit 1; }
    sets+=("$TENSORRT_INCLUDE_DIR")
else
    for d in "$cache"/tensorrt-*/include; do
        [ -f "$d/NvInferRuntime.h" ] && sets+=("$d")
    done
fi
if [ ${#sets[@]} -eq 0 ]; then
    echo "check-tensorrt: SKIPPED: no TensorRT headers (set TENSORRT_INCLUDE_DIR or put them in $cache/tensorrt-<version>/include)"
    exit 0
fi

kernels=target/cuda
[ -f "$kernels/libocrnet_kernels.a" ] || scripts/build-cuda.sh "$kernels"
if [ -z "${NVCC:-}" ]; then
    if command -v nvcc >/dev/null 2>&1; then NVCC=$(command -v nvcc)
    elif [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then NVCC="$CUDA_HOME/bin/nvcc"
    else NVCC=$(scripts/install-nvcc.sh | tail -n1)
    fi
fi
cuda_root=$(dirname "$(dirname "$NVCC")")
cuda_lib="$cuda_root/lib64"
[ -f "$cuda_lib/libcudart_static.a" ] || cuda_lib="$cuda_root/lib"
CXX=${CXX:-g++}

status=0
for inc in "${sets[@]}"; do
    # The preprocessor resolves the version macros (11.x defines them through other macros).
    ver=$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' |
        "$CXX" -E -P -isystem "$inc" -x c++ - 2>/dev/null | tail -n1 | tr -d ' ')
    out="target/tensorrt-${ver:-unknown}"
    mkdir -p "$out"
    echo "== TensorRT $ver headers: $inc"
    flags=(-std=c++17 -O2 -fPIC -fvisibility=hidden -Wall -Wextra -Werror -isystem "$inc" -isystem "$cuda_root/include")
    objs=()
    for src in cpp/plugin/common/ocrPluginCommon.cpp cpp/plugin/ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.cpp \
               cpp/plugin/ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.cpp cpp/plugin/ocrPluginLibrary.cpp; do
        obj="$out/$(basename "${src%.cpp}").o"
        "$CXX" "${flags[@]}" -c "$src" -o "$obj"
        objs+=("$obj")
    done
    "$CXX" -shared -o "$out/libocrnet_plugins.so" "${objs[@]}" "$kernels/libocrnet_kernels.a" \
        -L"$cuda_lib" -lcudart_static -ldl -lpthread -lrt -Wl,--no-undefined
    "$CXX" "${flags[@]}" -fvisibility=default cpp/tools/plugin_harness.cpp "$kernels/ocr_reference.o" \
        -L"$cuda_lib" -lcudart_static -ldl -lpthread -lrt -o "$out/plugin_harness"
    echo "built $out/libocrnet_plugins.so and $out/plugin_harness"
    "$out/plugin_harness" "$PWD/$out/libocrnet_plugins.so" || status=1
done
exit $status
