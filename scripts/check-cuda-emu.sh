#!/usr/bin/env bash
# Runs the OCR CUDA kernels' device code on the CPU (cpp/tools/cuda_emu): the GPU test driver
# (cpp/tools/ocr_kernel_test.cu, every shape, FP32 and FP16, against the C++ reference) built with g++
# instead of nvcc. It checks the kernels' indexing, reductions, softmax and barrier placement wherever there
# is no GPU; timing and the kernels as nvcc compiles them still need scripts/gpu-check.sh.
#
#   scripts/check-cuda-emu.sh [OUT_DIR]        # default target/cuda-emu
#   OCR_EMU_RUN=0 scripts/check-cuda-emu.sh    # build only (scripts/check-tensorrt.sh links the objects into an
#                                              # emulated plugin library, to run the plugins' own enqueue)
#   OCR_EMU_SANITIZE=address scripts/check-cuda-emu.sh target/cuda-emu-asan   # the CPU stand-ins for
#   OCR_EMU_SANITIZE=thread  scripts/check-cuda-emu.sh target/cuda-emu-tsan   # compute-sanitizer
# With OCR_EMU_SANITIZE, the kernels' device code runs under AddressSanitizer + UndefinedBehaviorSanitizer (an
# out-of-bounds read or write of global memory, whose emulated allocations are exactly the requested size, or of
# a __shared__ array: memcheck's job) or ThreadSanitizer (two threads of a block touching one __shared__ or
# global element, one of them writing, with no __syncthreads or warp shuffle between: racecheck's job).
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
link=(-pthread)
case "${OCR_EMU_SANITIZE:-}" in
    "") ;;
    address) flags+=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
             link+=(-fsanitize=address,undefined) ;;
    thread) flags+=(-fsanitize=thread); link+=(-fsanitize=thread)
            # The first race is enough (each report is a long stack of std::function frames).
            export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1} ;;
    *) echo "check-cuda-emu: OCR_EMU_SANITIZE must be address or thread, not '$OCR_EMU_SANITIZE'" >&2; exit 2 ;;
esac
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
g++ "${link[@]}" "$out"/{ocr_kernel_test,ocrGatherKernel,ocrAttentionKernel,ocr_params,ocr_reference,cuda_emu}.o \
    -o "$out/ocr_kernel_test"

[ "${OCR_EMU_RUN:-1}" != 0 ] || exit 0
echo "== GPU test driver on the CPU emulation"
timeout 900 "$out/ocr_kernel_test"
