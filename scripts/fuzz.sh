#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz: safetensors header, YAML config, tokenizer.model,
# tokenizer text) with clang, ASan and UBSan in their own build dir (default build-fuzz)
# and runs each for GLVQ_FUZZ_SECONDS (default 20) from the seeds in tests/fuzz/corpus/<target>.
# A crash, leak, timeout or sanitizer finding fails the script; the input that caused it is
# kept under <build dir>/artifacts/<target>/ and the log names it with the command that
# replays it. scripts/test.sh runs this when GLVQ_FUZZ_TESTS=1 (CI sets it).
# Environment: GLVQ_FUZZ_BUILD_DIR, GLVQ_FUZZ_SECONDS, GLVQ_FUZZ_TARGETS (default: all four),
# GLVQ_CMAKE_ARGS (as for setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${GLVQ_FUZZ_BUILD_DIR:-build-fuzz}
seconds=${GLVQ_FUZZ_SECONDS:-20}
targets=(${GLVQ_FUZZ_TARGETS:-safetensors config tokenizer tokenize})
command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (scripts/setup.sh installs clang)" >&2; exit 2; }

start=$(date +%s)
# shellcheck disable=SC2086
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja ${GLVQ_CMAKE_ARGS:-} -DCMAKE_BUILD_TYPE=Debug -DGLVQ_FUZZ=ON \
  >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"
echo "fuzz: built in $(( $(date +%s) - start ))s"

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:check_initialization_order=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
work=$(mktemp -d /tmp/glvq-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  bin=$dir/tests/fuzz/fuzz_$t
  art=$dir/artifacts/$t
  rm -rf "$art"; mkdir -p "$art" "$work/$t"
  # New inputs go to the scratch corpus $work/$t; the committed seeds are only read.
  if timeout $((seconds + 120)) "$bin" "$work/$t" "tests/fuzz/corpus/$t" -max_total_time="$seconds" \
       -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$art/" \
       >"$work/$t.log" 2>&1; then
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$work/$t.log" | grep -oE '[0-9]+$' || echo '?')
    echo "fuzz: $t: $runs inputs in ${seconds}s, no finding"
  else
    failed+=("$t")
    tail -60 "$work/$t.log"
    for a in "$art"/*; do
      [[ -e $a ]] && echo "fuzz: $t FAILED; reproducer $a (replay: $bin $a)"
    done
  fi
done
echo "fuzz: finished in $(( $(date +%s) - start ))s"
((${#failed[@]} == 0)) || { echo "fuzz: findings in ${failed[*]}" >&2; exit 1; }
