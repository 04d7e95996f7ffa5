#!/usr/bin/env bash
# Builds the GLVQ CUDA kernels with their tests and benchmarks (bench/standalone:
# CUDA, cuBLAS, fmt and GoogleTest only), runs the CPU codec tests and the GPU tests,
# and with --bench the benchmarks. Logs go to $OUT (or $BUILD/logs).
#   scripts/gpu_kernels.sh [--bench] [--no-tests]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-/tmp/glvq-kernels-build}
LOGS=${OUT:-$BUILD/logs}
BENCH=0
TESTS=1
for a in "$@"; do
  case "$a" in
    --bench) BENCH=1 ;;
    --no-tests) TESTS=0 ;;
    *) echo "usage: $0 [--bench] [--no-tests]" >&2; exit 2 ;;
  esac
done
export NCCL_NVLS_ENABLE=0
mkdir -p "$LOGS"
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$ROOT/bench/standalone" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release >"$LOGS/configure.log" 2>&1 ||
  { tail -40 "$LOGS/configure.log"; exit 1; }
cmake --build "$BUILD" -j "$(nproc)" >"$LOGS/build.log" 2>&1 || { grep -E "error|Error" "$LOGS/build.log" | head -40; exit 1; }
echo "built in $BUILD"
status=0
if [ "$TESTS" = 1 ]; then
  "$BUILD/glvq_codec_tests" >"$LOGS/codec_tests.log" 2>&1 || status=1
  tail -3 "$LOGS/codec_tests.log"
  "$BUILD/glvq_gpu_tests" >"$LOGS/gpu_tests.log" 2>&1 || status=1
  grep -E "^\[  (FAILED|PASSED) |Failure|Expected|Which is|actual|first differing|vs emulation|rep " "$LOGS/gpu_tests.log" | head -60
  tail -3 "$LOGS/gpu_tests.log"
fi
if [ "$BENCH" = 1 ]; then
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv >"$LOGS/gpu_state.txt" 2>&1 || true
  "$BUILD/bench_glvq_codec" 2>&1 | tee "$LOGS/bench_codec.txt" || status=1
  "$BUILD/bench_glvq_gemv" 2>&1 | tee "$LOGS/bench_gemv.txt" || status=1
fi
exit $status
