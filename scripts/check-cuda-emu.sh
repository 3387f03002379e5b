#!/usr/bin/env bash
# Runs the OCR CUDA kernels' device code on the CPU (cpp/tools/cuda_emu): the GPU test driver
# (cpp/tools/ocr_kernel_test.cu, every shape, FP32 and FP16, against the C++ reference) built with g++
# instead of nvcc. It checks the kernels' indexing, reductions, softmax and barrier placement wherever there
# is no GPU; timing and the kernels as nvcc compiles them still need scripts/gpu-check.sh.
#
#   scripts/check-cuda-emu.sh [OUT_DIR]        # default target/cuda-emu
#   OCR_EMU_RUN=0 scripts/check-cuda-emu.sh    # build only (scripts/check-tensorrt.sh links the objects into an
#                                              # emulated plugin library, to run the plugins' own enqueue)
#
# Needs g++ (C++17, pthreads), perl, and the CUDA headers: those of $NVCC, nvcc on PATH, $CUDA_HOME, or the
# pinned registry install (scripts/install-nvcc.sh). No GPU, no CUDA library.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/cuda-emu}"
mkdir -p "$out/gen"

if [ -z "${NVCC:-}" ]; then
    if command -v nvcc >/dev/null 2>&1; then NVCC=$(command -v nvcc)
    elif [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then NVCC="$CUDA_HOME/bin/nvcc"
    else NVCC=$(scripts/install-nvcc.sh | tail -n1)
    fi
fi
cuda_inc="$(dirname "$(dirname "$NVCC")")/include"
[ -f "$cuda_inc/cuda_runtime.h" ] || { echo "check-cuda-emu: no cuda_runtime.h in $cuda_inc" >&2; exit 1; }

# The one construct a host compiler cannot parse: `kernel<<<config>>>(args` becomes
# `::cuda_emu::launch("kernel", ::cuda_emu::config(config), kernel, args`.
for f in ocrGatherKernel ocrAttentionKernel; do
    perl -pe 's/([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\(/::cuda_emu::launch("$1", ::cuda_emu::config($2), $1, /g' \
        "cpp/ocr/$f.cu" > "$out/gen/$f.cpp"
    grep -q 'cuda_emu::launch' "$out/gen/$f.cpp" || { echo "check-cuda-emu: no launch rewritten in $f.cu" >&2; exit 1; }
done

# -fPIC -fvisibility=hidden: the same objects go into an emulated libocrnet_plugins.so, whose copy of the
# emulated runtime must stay its own.
flags=(-std=c++17 -O2 -g -pthread -fPIC -fvisibility=hidden -Wall -Wextra -Werror -Wno-unknown-pragmas -fno-strict-aliasing
       -isystem "$cuda_inc" -Icpp/ocr -Icpp/tools)
emu=(-include cpp/tools/cuda_emu/cuda_emu.h)
pids=()
compile() { g++ "${flags[@]}" "$@" & pids+=($!); }
compile "${emu[@]}" -c "$out/gen/ocrGatherKernel.cpp" -o "$out/ocrGatherKernel.o"
compile "${emu[@]}" -c "$out/gen/ocrAttentionKernel.cpp" -o "$out/ocrAttentionKernel.o"
for p in "${pids[@]}"; do wait "$p"; done
pids=()
compile "${emu[@]}" -x c++ -c cpp/tools/ocr_kernel_test.cu -o "$out/ocr_kernel_test.o"
compile -c cpp/tools/cuda_emu/cuda_emu.cpp -o "$out/cuda_emu.o"
for p in "${pids[@]}"; do wait "$p"; done
for f in ocr_params ocr_reference; do g++ "${flags[@]}" -c "cpp/ocr/$f.cpp" -o "$out/$f.o"; done
g++ -pthread "$out"/{ocr_kernel_test,ocrGatherKernel,ocrAttentionKernel,ocr_params,ocr_reference,cuda_emu}.o \
    -o "$out/ocr_kernel_test"

[ "${OCR_EMU_RUN:-1}" != 0 ] || exit 0
echo "== GPU test driver on the CPU emulation"
timeout 900 "$out/ocr_kernel_test"
