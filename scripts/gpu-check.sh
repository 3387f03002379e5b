#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds and runs the kernel tests against the C++ reference, the benchmark,
# the unfused PyTorch peer (when torch imports) and, when TensorRT headers are found, the plugin harness with
# enqueue on the GPU. Needs nvcc, g++ and perl; no Rust (the cpp/trt bridge check, which needs cargo and no
# GPU, is left to .ci/run when cargo is absent) and no network.
#
#   scripts/gpu-check.sh [LOG_DIR]      # the whole output also goes to LOG_DIR/gpu-check.log
#
# It builds for sm_87 and sm_90 and for the GPU at hand (nvidia-smi's compute capability) when that is neither;
# OCR_CUDA_ARCHS overrides. Every step runs even when one before it failed; the summary at the end says which
# passed, and the exit status is non-zero when any failed or when there is no GPU.
#
# TensorRT headers (for the plugin harness): TENSORRT_INCLUDE_DIR, else the header cache of
# scripts/check-tensorrt.sh. A GPU machine that cannot fetch them takes them along:
# scripts/device-bundle.sh copies the cached sets into .device/ (ignored by git) and prints the call.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${1:-}" ]; then
    mkdir -p "$1"
    exec > >(tee "$1/gpu-check.log") 2>&1
fi
out=target/cuda

if [ -z "${OCR_CUDA_ARCHS:-}" ]; then
    OCR_CUDA_ARCHS="87 90"
    here=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' .')
    case " $OCR_CUDA_ARCHS " in *" $here "*) ;; *) [ -n "$here" ] && OCR_CUDA_ARCHS="$OCR_CUDA_ARCHS $here" ;; esac
    export OCR_CUDA_ARCHS
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /'

summary=()
step() {
    local name=$1
    shift
    echo "== $name"
    local t0=$SECONDS
    if "$@"; then
        summary+=("PASS  $name ($((SECONDS - t0)) s)")
    else
        summary+=("FAIL  $name (exit $?, $((SECONDS - t0)) s)")
    fi
}
torch_peer() {
    if python3 -c 'import torch' >/dev/null 2>&1; then
        python3 cpp/tools/ocr_torch_bench.py
    else
        echo "ocr_torch_bench: torch not importable; skipped the unfused PyTorch comparison"
    fi
}
plugins() {
    # The cpp/trt bridge check needs cargo (no GPU): skipped here when cargo is absent.
    if ! command -v cargo >/dev/null 2>&1; then export OCRNET_CHECK_BRIDGE=0; fi
    OCRNET_REQUIRE_HEADERS=1 scripts/check-tensorrt.sh
}

step "build (sm: $OCR_CUDA_ARCHS)" scripts/build-cuda.sh "$out"
step "kernel tests (relative L2 vs the C++ reference: FP32 <= 1e-5, FP16 <= 2e-3)" "$out/ocr_kernel_test"
step "benchmark" "$out/ocr_kernel_bench"
step "PyTorch unfused peer" torch_peer
step "plugin harness" plugins

echo "== summary"
printf '%s\n' "${summary[@]}"
! printf '%s\n' "${summary[@]}" | grep -q '^FAIL'
