#!/usr/bin/env bash
# Hardware smoke test on a Jetson Orin with JetPack 6.x (TensorRT 10.3, CUDA 12.6): builds ocrnet-edge with
# TensorRT, compiles the embedded recipe (the sample HRNet-OCR) to FP32, FP16 and INT8 engines, runs each
# engine on the sample images against the CPU executor (pixel agreement per precision), writes the accuracy
# report of the engines (report --backend trt, with the recipe's gate) and prints a latency table. Exit status 0 only when every step passes; the log of each step is kept under the work folder.
#
#   deploy/jetson-smoke.sh [WORK_DIR]            # default: target/jetson-smoke
#
# Environment (defaults are JetPack 6's locations):
#   TENSORRT_INCLUDE_DIR  /usr/include/aarch64-linux-gnu      (NvInfer.h, NvOnnxParser.h)
#   TENSORRT_LIB_DIR      /usr/lib/aarch64-linux-gnu          (libnvinfer.so, libnvonnxparser.so)
#   CUDA_HOME             /usr/local/cuda                     (nvcc)
#   MIN_FP32 / MIN_FP16 / MIN_INT8   agreement thresholds (0.995 / 0.99 / 0.85)
#   MAX_MIOU_DROP         report gate: mIoU points any engine may lose against fp32 (default: the recipe's, 1.0)
#   RUNS / WARMUP         bench engine runs (200 / 20)
#   IMAGES                images to compare on (calibration/sample/leftImg8bit/val)
#   ALLOW_NON_JETSON=1    run on another Linux machine with TensorRT (the JetPack check becomes a warning)
#   SKIP_BUILD=1          reuse target/release/ocrnet-edge
set -euo pipefail
cd "$(dirname "$0")/.."

work="${1:-target/jetson-smoke}"
mkdir -p "$work"
work=$(cd "$work" && pwd)
: "${TENSORRT_INCLUDE_DIR:=/usr/include/aarch64-linux-gnu}"
: "${TENSORRT_LIB_DIR:=/usr/lib/aarch64-linux-gnu}"
: "${CUDA_HOME:=/usr/local/cuda}"
: "${MIN_FP32:=0.995}" "${MIN_FP16:=0.99}" "${MIN_INT8:=0.85}"
: "${RUNS:=200}" "${WARMUP:=20}"
: "${IMAGES:=calibration/sample/leftImg8bit/val}"
export TENSORRT_INCLUDE_DIR TENSORRT_LIB_DIR CUDA_HOME

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'jetson-smoke: FAIL: %s\n' "$*" >&2; exit 1; }

step "platform"
if [ -r /etc/nv_tegra_release ]; then
    release=$(head -n1 /etc/nv_tegra_release)
    echo "L4T: $release"
    case "$release" in
        *R36*) ;;
        *) [ "${ALLOW_NON_JETSON:-0}" = 1 ] || fail "not JetPack 6.x (L4T R36): $release" ;;
    esac
elif [ "${ALLOW_NON_JETSON:-0}" = 1 ]; then
    echo "warning: no /etc/nv_tegra_release (not a Jetson); going on because ALLOW_NON_JETSON=1"
else
    fail "no /etc/nv_tegra_release: this is not a Jetson (set ALLOW_NON_JETSON=1 to run anyway)"
fi
[ -f "$TENSORRT_INCLUDE_DIR/NvInfer.h" ] || fail "no NvInfer.h in TENSORRT_INCLUDE_DIR=$TENSORRT_INCLUDE_DIR (apt install tensorrt-dev / nvidia-jetpack)"
[ -f "$TENSORRT_INCLUDE_DIR/NvOnnxParser.h" ] || fail "no NvOnnxParser.h in $TENSORRT_INCLUDE_DIR (libnvonnxparsers-dev)"
[ -x "$CUDA_HOME/bin/nvcc" ] || fail "no nvcc in CUDA_HOME=$CUDA_HOME"
export PATH="$CUDA_HOME/bin:$PATH"
echo "TensorRT headers: $TENSORRT_INCLUDE_DIR, libraries: $TENSORRT_LIB_DIR, nvcc: $("$CUDA_HOME/bin/nvcc" --version | grep -o 'release [0-9.]*')"

bin=target/release/ocrnet-edge
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    step "cargo build --release --features tensorrt (sm_87)"
    if ! OCR_CUDA_ARCHS=${OCR_CUDA_ARCHS:-87} cargo build --release --locked --features tensorrt \
        >"$work/build.log" 2>&1; then
        tail -n 20 "$work/build.log" >&2
        fail "build failed (see $work/build.log)"
    fi
    tail -n 1 "$work/build.log"
fi
[ -x "$bin" ] || fail "$bin is missing"

step "compile the embedded recipe to FP32, FP16 and INT8 engines"
out="$work/out"
if ! "$bin" -v compile --out "$out" --json >"$work/compile.json" 2>"$work/compile.log"; then
    tail -n 20 "$work/compile.log" >&2
    fail "compile failed (see $work/compile.log)"
fi
for p in fp32 fp16 int8; do
    if [ ! -f "$out/model.$p.engine" ] || [ ! -f "$out/model.$p.engine.json" ]; then
        fail "compile wrote no $p engine with its manifest"
    fi
    echo "$out/model.$p.engine ($(stat -c %s "$out/model.$p.engine") bytes)"
done
reference="$out/model.fused.onnx"
[ -f "$reference" ] || reference="$out/model.simplified.onnx"

step "a second compile finds the engines up to date"
"$bin" compile --out "$out" >"$work/compile2.log" 2>&1 || fail "second compile failed (see $work/compile2.log)"
grep -q "up to date" "$work/compile2.log" || fail "the second compile rebuilt engines whose inputs did not change"

step "engines against the CPU executor on $IMAGES"
status=0
for p in fp32 fp16 int8; do
    case $p in fp32) min=$MIN_FP32 ;; fp16) min=$MIN_FP16 ;; int8) min=$MIN_INT8 ;; esac
    # The FP32 graph on the CPU is the reference for every precision: the engines should all approximate it.
    if ! "$bin" agree "$out/model.$p.engine" --backend trt --reference "$reference" --reference-backend cpu \
        --images "$IMAGES" --min "$min" | tee "$work/agree.$p.log"; then
        echo "jetson-smoke: $p engine below its agreement threshold $min" >&2
        status=1
    fi
done

step "latency (bench engine, $RUNS runs after $WARMUP warm-up, CUDA graph)"
printf '%-6s %10s %10s %10s %10s %12s\n' precision "median ms" "p90 ms" "p99 ms" "mean ms" "throughput"
for p in fp32 fp16 int8; do
    if ! "$bin" bench engine "$out/model.$p.engine" --runs "$RUNS" --warmup "$WARMUP" --cuda-graph --json \
        >"$work/bench.$p.json" 2>"$work/bench.$p.log"; then
        echo "jetson-smoke: bench engine failed for $p (see $work/bench.$p.log)" >&2
        status=1
        continue
    fi
    python3 - "$p" "$work/bench.$p.json" <<'PY' || cat "$work/bench.$p.json"
import json, sys
r = json.load(open(sys.argv[2]))["latency"]
print(f"{sys.argv[1]:<9} {r['median_ms']:10.3f} {r['p90_ms']:10.3f} {r['p99_ms']:10.3f} {r['mean_ms']:10.3f} {r['throughput_per_s']:8.1f} qps")
PY
done

step "accuracy report of the engines on the sample val split (report --backend trt)"
gate=()
[ -n "${MAX_MIOU_DROP:-}" ] && gate=(--max-miou-drop "$MAX_MIOU_DROP")
if ! "$bin" report --backend trt --artifacts "$out" --out "$work/report" "${gate[@]}" >"$work/report.log" 2>&1; then
    echo "jetson-smoke: report --backend trt failed or its gate broke (see $work/report.log)" >&2
    status=1
fi
tail -n 6 "$work/report.log"

if [ "$status" -eq 0 ]; then
    step "PASS (logs and engines in $work)"
else
    step "FAIL (logs and engines in $work)"
fi
exit "$status"
