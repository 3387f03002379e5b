#!/usr/bin/env bash
# Builds the crate for aarch64 (the Jetson's Cortex-A78AE cores run the CPU executor as the fallback backend)
# and runs the executor's tests and the fixtures' golden-output tests under qemu-user, so the portable paths (the `gemm`
# crate's NEON kernels, no x86 intrinsics anywhere) are exercised, not just compiled.
#
#   scripts/check-aarch64.sh                          # executor + OCR tests, fixture golden outputs
#   scripts/check-aarch64.sh --lib -- exec::ops::conv # any `cargo test` arguments
#
# Needs the Rust target and a cross toolchain plus qemu, e.g. on Debian/Ubuntu:
#   rustup target add aarch64-unknown-linux-gnu
#   apt-get install qemu-user gcc-aarch64-linux-gnu g++-aarch64-linux-gnu
# Without them it says so and exits 0: CI machines without apt access skip it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
sysroot=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}

missing=()
libdir=$(rustc --print target-libdir --target "$target" 2>/dev/null || true)
compgen -G "$libdir/libstd-*" >/dev/null || missing+=("rust target $target")
for tool in aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ qemu-aarch64; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "check-aarch64: SKIPPED: missing ${missing[*]}"
    exit 0
fi

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++

if [ $# -gt 0 ]; then
    echo "== aarch64 (qemu): cargo test $*"
    cargo test --locked --target "$target" "$@"
    exit 0
fi
echo "== aarch64 (qemu): executor and OCR reference unit tests"
cargo test --locked --target "$target" --lib -- --quiet exec:: ocr::
echo "== aarch64 (qemu): every fixture against its onnxruntime golden outputs; FP16 and Q/DQ simulation"
cargo test --locked --target "$target" --test exec_golden --test precision -- --quiet
