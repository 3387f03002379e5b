#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds and runs the kernel tests against the C++ reference, the benchmark,
# the unfused PyTorch peer (when torch imports) and, when TensorRT headers are found, the plugin harness with
# enqueue on the GPU. Needs nvcc (see scripts/build-cuda.sh); no Rust.
#
#   scripts/gpu-check.sh            # OCR_CUDA_ARCHS="90" to build only for the GPU at hand (faster)
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/cuda
scripts/build-cuda.sh "$out"

echo "== kernel tests (relative L2 vs the C++ reference: FP32 <= 1e-5, FP16 <= 2e-3)"
"$out/ocr_kernel_test"

echo "== benchmark"
"$out/ocr_kernel_bench"
if python3 -c 'import torch' >/dev/null 2>&1; then
    python3 cpp/tools/ocr_torch_bench.py
else
    echo "ocr_torch_bench: torch not importable; skipped the unfused PyTorch comparison"
fi

echo "== plugin harness"
scripts/check-tensorrt.sh
