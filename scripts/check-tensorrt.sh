#!/usr/bin/env bash
# Compile-checks the TensorRT code against TensorRT headers (no TensorRT library needed):
#   1. the engine builder/runtime bridge (cpp/trt + src/engine, feature `tensorrt`): `cargo check --features
#      tensorrt`, which compiles the C++ shims to objects and type-checks the Rust side (nothing is linked), then
#      a strict -Werror syntax pass over cpp/trt with the cxx-generated headers;
#   2. the plugin library: builds libocrnet_plugins.so and the plugin harness, and runs the harness (host
#      checks everywhere, enqueue on the GPU when there is one); then the same plugin objects over the kernels'
#      CPU emulation (cpp/tools/cuda_emu), where the harness runs each plugin's enqueue without a GPU.
# Set OCRNET_CHECK_PLUGINS=0 to run only step 1, OCRNET_CHECK_BRIDGE=0 to skip step 1 (it needs cargo),
# OCRNET_REQUIRE_HEADERS=1 to fail rather than skip when no header set is found (scripts/gpu-check.sh does).
#
#   TENSORRT_INCLUDE_DIR=/path/to/TensorRT/include scripts/check-tensorrt.sh     # one header set
#   scripts/check-tensorrt.sh                                                    # every cached header set
#
# Cache of header sets (outside the repository, never committed):
#   ${OCRNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ocrnet-edge}/tensorrt-<version>/include
# e.g. from a clone of NVIDIA/TensorRT (Apache-2.0):
#   git -C TensorRT archive release/10.3 include | tar -x -C "$cache/tensorrt-10.3"
# The ONNX parser header (NvOnnxParser.h) ships apart from NVIDIA/TensorRT's include/ for some releases: take it
# from onnx/onnx-tensorrt (NvOnnxParser.h at the repository root, the branch of that release).
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
    [ "${OCRNET_REQUIRE_HEADERS:-0}" = 0 ]
    exit
fi

if [ -z "${NVCC:-}" ]; then
    if command -v nvcc >/dev/null 2>&1; then NVCC=$(command -v nvcc)
    elif [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then NVCC="$CUDA_HOME/bin/nvcc"
    else NVCC=$(scripts/install-nvcc.sh | tail -n1)
    fi
fi
export NVCC
cuda_root=$(dirname "$(dirname "$NVCC")")
cuda_lib="$cuda_root/lib64"
[ -f "$cuda_lib/libcudart_static.a" ] || cuda_lib="$cuda_root/lib"
CXX=${CXX:-g++}
check_plugins=${OCRNET_CHECK_PLUGINS:-1}
check_bridge=${OCRNET_CHECK_BRIDGE:-1}
kernels=target/cuda
if [ "$check_plugins" != 0 ] && [ ! -f "$kernels/libocrnet_kernels.a" ]; then
    scripts/build-cuda.sh "$kernels"
fi
emu=target/cuda-emu
emu_asan=target/cuda-emu-asan
if [ "$check_plugins" != 0 ]; then
    OCR_EMU_RUN=0 scripts/check-cuda-emu.sh "$emu"
    OCR_EMU_RUN=0 OCR_EMU_SANITIZE=address scripts/check-cuda-emu.sh "$emu_asan"
fi

# Step 1: cpp/trt and src/engine against one header set. cargo check runs build.rs, which compiles cpp/trt (and
# the plugins and kernels) to objects; the generated cxx headers it leaves are reused for the -Werror pass.
check_bridge() {
    local inc=$1 ver=$2
    if [ ! -f "$inc/NvOnnxParser.h" ]; then
        echo "check-tensorrt: $inc has no NvOnnxParser.h (cpp/trt needs the ONNX parser); see the header of this script" >&2
        return 1
    fi
    echo "-- cargo check --features tensorrt (TensorRT $ver)"
    TENSORRT_INCLUDE_DIR="$inc" cargo check --quiet --features tensorrt --message-format short || return 1
    local gen
    gen=$(find target/debug/build -path '*/out/cxxbridge/include/ocrnet-edge/src/engine/ffi.rs.h' \
        -printf '%T@ %p\n' 2>/dev/null | sort -nr | head -n1 | cut -d' ' -f2-)
    [ -n "$gen" ] || { echo "check-tensorrt: no cxx-generated src/engine/ffi.rs.h under target/debug/build" >&2; return 1; }
    local root=${gen%/include/ocrnet-edge/src/engine/ffi.rs.h}
    echo "-- g++ -fsyntax-only -Werror cpp/trt (TensorRT $ver)"
    local f
    for f in cpp/trt/*.cpp; do
        "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -isystem "$inc" -isystem "$cuda_root/include" \
            -I "$root/include" -I "$root/crate" "$f" || return 1
    done
}

status=0
for inc in "${sets[@]}"; do
    # The preprocessor resolves the version macros (11.x defines them through other macros).
    ver=$(printf '#include <NvInferVersion.h>\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' |
        "$CXX" -E -P -isystem "$inc" -x c++ - 2>/dev/null | tail -n1 | tr -d ' ')
    out="target/tensorrt-${ver:-unknown}"
    mkdir -p "$out"
    echo "== TensorRT $ver headers: $inc"
    if [ "$check_bridge" != 0 ]; then
        check_bridge "$inc" "$ver" || { echo "check-tensorrt: cpp/trt FAILED against TensorRT $ver" >&2; status=1; }
    else
        echo "-- cpp/trt bridge check skipped (OCRNET_CHECK_BRIDGE=0)"
    fi
    [ "$check_plugins" != 0 ] || continue
    flags=(-std=c++17 -O2 -fPIC -fvisibility=hidden -Wall -Wextra -Werror -isystem "$inc" -isystem "$cuda_root/include")
    objs=()
    for src in cpp/plugin/common/ocrPluginCommon.cpp cpp/plugin/ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.cpp \
               cpp/plugin/ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.cpp cpp/plugin/ocrPluginLibrary.cpp; do
        obj="$out/$(basename "${src%.cpp}").o"
        "$CXX" "${flags[@]}" -c "$src" -o "$obj"
        objs+=("$obj")
    done
    # --exclude-libs: the kernels' and the static CUDA runtime's symbols stay inside the library, so they
    # cannot bind to (or be bound by) TensorRT's own copies; the .so exports its two entry points only.
    "$CXX" -shared -o "$out/libocrnet_plugins.so" "${objs[@]}" "$kernels/libocrnet_kernels.a" \
        -L"$cuda_lib" -lcudart_static -ldl -lpthread -lrt -Wl,--no-undefined -Wl,--exclude-libs,ALL
    # (libstdc++'s header templates instantiated here keep default visibility, as in any C++ library; they
    # are the std:: names filtered out.)
    exported=$(nm -D --defined-only "$out/libocrnet_plugins.so" | awk '{print $3}' |
        grep -Ev '^_ZZ?N?K?St|^_ZNSt|^_ZNKSt|^_ZSt' | sort | tr '\n' ' ')
    if [ "$exported" = "getCreators setLoggerFinder " ]; then
        echo "ok    libocrnet_plugins.so exports getCreators and setLoggerFinder only (besides std:: templates)"
    else
        echo "FAIL  libocrnet_plugins.so exports more than getCreators and setLoggerFinder: $exported" >&2
        status=1
    fi
    "$CXX" "${flags[@]}" -fvisibility=default cpp/tools/plugin_harness.cpp "$kernels/ocr_reference.o" \
        -L"$cuda_lib" -lcudart_static -ldl -lpthread -lrt -o "$out/plugin_harness"
    echo "built $out/libocrnet_plugins.so and $out/plugin_harness"
    "$out/plugin_harness" "$PWD/$out/libocrnet_plugins.so" || status=1
    # The same plugin objects over the kernels' CPU emulation (scripts/check-cuda-emu.sh): the harness then
    # sees a "device" and runs each plugin's own enqueue against the C++ reference, FP32 and FP16.
    "$CXX" -shared -o "$out/libocrnet_plugins_emu.so" "${objs[@]}" \
        "$emu"/{ocrGatherKernel,ocrAttentionKernel,ocr_params,cuda_emu}.o -pthread -Wl,--no-undefined
    "$CXX" "${flags[@]}" -fvisibility=default cpp/tools/plugin_harness.cpp "$emu/ocr_reference.o" "$emu/cuda_emu.o" \
        -ldl -pthread -o "$out/plugin_harness_emu"
    echo "-- plugin harness on the CUDA CPU emulation (enqueue runs the kernels' device code on the CPU)"
    "$out/plugin_harness_emu" "$PWD/$out/libocrnet_plugins_emu.so" || status=1
    # Once more with the plugins, the harness and the emulated kernels under AddressSanitizer + UBSan: a
    # dangling PluginField pointer, a serialization buffer overrun or a kernel overrun fails here.
    san=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
    objs=()
    for src in cpp/plugin/common/ocrPluginCommon.cpp cpp/plugin/ocrSpatialGatherPlugin/ocrSpatialGatherPlugin.cpp \
               cpp/plugin/ocrObjectAttentionPlugin/ocrObjectAttentionPlugin.cpp cpp/plugin/ocrPluginLibrary.cpp; do
        obj="$out/$(basename "${src%.cpp}").asan.o"
        "$CXX" "${flags[@]}" "${san[@]}" -c "$src" -o "$obj"
        objs+=("$obj")
    done
    "$CXX" -shared "${san[@]}" -o "$out/libocrnet_plugins_asan.so" "${objs[@]}" \
        "$emu_asan"/{ocrGatherKernel,ocrAttentionKernel,ocr_params,cuda_emu}.o -pthread
    "$CXX" "${flags[@]}" "${san[@]}" -fvisibility=default cpp/tools/plugin_harness.cpp "$emu_asan/ocr_reference.o" \
        "$emu_asan/cuda_emu.o" -ldl -pthread -o "$out/plugin_harness_asan"
    echo "-- the same under AddressSanitizer + UBSan"
    "$out/plugin_harness_asan" "$PWD/$out/libocrnet_plugins_asan.so" | tail -n1 || status=1
done
exit $status
