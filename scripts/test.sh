#!/usr/bin/env bash
# The test suite: GoogleTest units (ctest) and end-to-end runs (tests/e2e/*.sh)
# of the built binaries. Expects scripts/setup.sh to have run.
# GLVQ_BUILD_DIR selects the build (default build). GLVQ_SANITIZE_TESTS=1 adds
# scripts/test_sanitized.sh, GLVQ_FUZZ_TESTS=1 adds scripts/fuzz.sh (.ci/run runs both after the suite).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${GLVQ_BUILD_DIR:-build}
[[ -x $build_dir/glvq-worker ]] || { echo "test: $build_dir/glvq-worker is missing; run scripts/setup.sh first" >&2; exit 2; }

start=$(date +%s)
failed=0
passed=0
ctest --test-dir "$build_dir" -L cpu --output-on-failure -j "$(nproc)" || failed=$((failed + 1))

for t in tests/e2e/*.sh; do  # lib.bash is sourced by them, not run
  [[ -e $t ]] || continue
  echo "=== e2e: $t"
  t0=$(date +%s)
  if GLVQ_BUILD_DIR=$build_dir bash "$t"; then
    passed=$((passed + 1)); echo "=== PASS $t ($(( $(date +%s) - t0 ))s)"
  else
    failed=$((failed + 1)); echo "=== FAIL $t ($(( $(date +%s) - t0 ))s)"
  fi
done
# Opt-in: the unit tests under ASan + UBSan and a short fuzzing run (.ci/run runs them itself).
for extra in "${GLVQ_SANITIZE_TESTS:-0}:scripts/test_sanitized.sh" "${GLVQ_FUZZ_TESTS:-0}:scripts/fuzz.sh"; do
  [[ ${extra%%:*} == 1 ]] || continue
  t=${extra#*:}
  echo "=== $t"
  t0=$(date +%s)
  if "$t"; then
    passed=$((passed + 1)); echo "=== PASS $t ($(( $(date +%s) - t0 ))s)"
  else
    failed=$((failed + 1)); echo "=== FAIL $t ($(( $(date +%s) - t0 ))s)"
  fi
done
echo "test suite finished in $(( $(date +%s) - start ))s"
echo "e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
