#!/usr/bin/env bash
# The unit tests (ctest -L cpu) built with AddressSanitizer + UndefinedBehaviorSanitizer
# in their own build dir (default build-asan): any finding aborts the test that hit it
# (-fno-sanitize-recover, halt_on_error), so the suite fails with the report in its log.
# scripts/test.sh runs this when GLVQ_SANITIZE_TESTS=1 (CI sets it). Environment:
# GLVQ_ASAN_BUILD_DIR, GLVQ_CMAKE_ARGS (as for setup.sh), GLVQ_SANITIZE_TARGETS (what
# to build and run: "all" = glvq_base_tests + glvq_tests, or "base" = glvq_base_tests).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${GLVQ_ASAN_BUILD_DIR:-build-asan}
targets=${GLVQ_SANITIZE_TARGETS:-all}
start=$(date +%s)

# Debug: assert()s stay on; GLVQ_SANITIZE adds -O1 -g after the build type's flags.
# CUDA off: nvcc does not take the sanitizer flags, and the GPU tests do not run in CI.
# shellcheck disable=SC2086
cmake -S . -B "$dir" -G Ninja ${GLVQ_CMAKE_ARGS:-} -DCMAKE_BUILD_TYPE=Debug -DGLVQ_SANITIZE=ON \
  -DGLVQ_CUDA=OFF >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
case $targets in
  all) build=(glvq_base_tests glvq_tests); regex='' ;;
  base) build=(glvq_base_tests); regex='^(Config|FsUtil|Log|LlamaConfig|ModelFiles|Safetensors|Tokenizer)' ;;
  *) echo "test_sanitized: GLVQ_SANITIZE_TARGETS must be all or base, not $targets" >&2; exit 2 ;;
esac
cmake --build "$dir" -j "$(nproc)" --target "${build[@]}"
echo "test_sanitized: built ${build[*]} in $(( $(date +%s) - start ))s"

supp=$PWD/tests/sanitizers
# detect_leaks stays on, with the suppressions (lsan.supp) for what LibTorch keeps until exit.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:print_summary=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
t0=$(date +%s)
ctest --test-dir "$dir" -L cpu ${regex:+-R "$regex"} --output-on-failure -j "$(nproc)" --timeout 900
echo "test_sanitized: unit tests clean under ASan + UBSan (${build[*]}): tests $(( $(date +%s) - t0 ))s, total $(( $(date +%s) - start ))s"
