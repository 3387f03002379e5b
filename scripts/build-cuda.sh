#!/usr/bin/env bash
# Compiles the OCR CUDA kernels for sm_87 (Jetson Orin) and sm_90 (H100) plus the GPU test driver and the
# benchmark, with nvcc alone (no Rust, no Python). Run by .ci/run on every run (no GPU needed to compile) and by
# scripts/gpu-check.sh on a GPU machine.
#
#   scripts/build-cuda.sh [OUT_DIR]        # default target/cuda
#
# nvcc: $NVCC, else nvcc on PATH, else $CUDA_HOME/bin/nvcc, else the pinned registry install
# (scripts/install-nvcc.sh). Only flags CUDA 12.6 (JetPack 6) accepts are used.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/cuda}"
mkdir -p "$out"

if [ -z "${NVCC:-}" ]; then
    if command -v nvcc >/dev/null 2>&1; then NVCC=$(command -v nvcc)
    elif [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then NVCC="$CUDA_HOME/bin/nvcc"
    else NVCC=$(scripts/install-nvcc.sh | tail -n1)
    fi
fi
echo "nvcc: $NVCC ($("$NVCC" --version | grep -o 'release [0-9.]*'))"

ARCHS=${OCR_CUDA_ARCHS:-"87 90"}
read -ra archs <<< "$ARCHS"
[ ${#archs[@]} -gt 0 ] || { echo "build-cuda: OCR_CUDA_ARCHS names no architecture" >&2; exit 1; }
gencode=()
for a in "${archs[@]}"; do gencode+=(-gencode "arch=compute_$a,code=sm_$a"); done
# And PTX of the last architecture, which the driver compiles for a GPU newer than all of them.
last=${archs[-1]}
gencode+=(-gencode "arch=compute_$last,code=compute_$last")
# -fPIC: the same objects go into libocrnet_plugins.so (scripts/check-tensorrt.sh).
flags=(-std=c++17 -O3 -Xcompiler -Wall,-fPIC -Werror all-warnings "${gencode[@]}")

# The kernels must not spill registers or use local memory: both would sit in their inner loops, and the
# register budgets in the kernels' comments assume neither. With OCR_CUDA_STRICT=1 (.ci/run, pinned nvcc)
# either fails the build (ptxas warnings, made errors by -Werror all-warnings). Other nvcc versions allocate
# registers differently, so other builds do not check.
kernel_flags=()
if [ "${OCR_CUDA_STRICT:-0}" = 1 ]; then kernel_flags=(-Xptxas -warn-spills,-warn-lmem-usage); fi

# Two jobs at a time: CI has two cores, and each kernel file is one long nvcc run.
pids=()
compile() { "$NVCC" "${flags[@]}" "${@:3}" -c "$1" -o "$2" & pids+=($!); }
compile cpp/ocr/ocrGatherKernel.cu "$out/ocrGatherKernel.o" "${kernel_flags[@]}"
compile cpp/ocr/ocrAttentionKernel.cu "$out/ocrAttentionKernel.o" "${kernel_flags[@]}"
for p in "${pids[@]}"; do wait "$p"; done
pids=()
compile cpp/tools/ocr_kernel_test.cu "$out/ocr_kernel_test.o"
compile cpp/tools/ocr_kernel_bench.cu "$out/ocr_kernel_bench.o"
for p in "${pids[@]}"; do wait "$p"; done
for f in ocr_params ocr_reference; do
    "$NVCC" -std=c++17 -O2 -Xcompiler -Wall,-Wextra,-fPIC -c "cpp/ocr/$f.cpp" -o "$out/$f.o"
done
ar rcs "$out/libocrnet_kernels.a" "$out/ocrGatherKernel.o" "$out/ocrAttentionKernel.o" "$out/ocr_params.o"
"$NVCC" "${gencode[@]}" "$out/ocr_kernel_test.o" "$out/ocr_reference.o" "$out/libocrnet_kernels.a" \
    -o "$out/ocr_kernel_test"
"$NVCC" "${gencode[@]}" "$out/ocr_kernel_bench.o" "$out/libocrnet_kernels.a" -o "$out/ocr_kernel_bench"
echo "built $out/ocr_kernel_test, $out/ocr_kernel_bench, $out/libocrnet_kernels.a (sm: $ARCHS)"
