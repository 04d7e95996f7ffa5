#!/usr/bin/env bash
# Installs glvq's dependencies from Debian packages (bookworm) and builds it
# into build/. Safe to re-run: apt-get skips what is installed, ninja rebuilds
# only what changed. Environment: GLVQ_BUILD_DIR (default build),
# GLVQ_CMAKE_ARGS (extra CMake flags), GLVQ_SKIP_APT=1 (no package installs).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${GLVQ_BUILD_DIR:-build}

packages=(build-essential cmake ninja-build pkg-config git libtorch-dev libopenmpi-dev openmpi-bin
          libhdf5-dev hdf5-tools libyaml-cpp-dev libfmt-dev libgtest-dev nlohmann-json3-dev
          libcli11-dev libsentencepiece-dev libopenblas0-pthread slurm-wlm munge clang libclang-rt-14-dev
          libxml2-utils chromium)
# libopenblas0-pthread: Debian's LibTorch calls the libblas.so.3 alternative; without OpenBLAS
# that is the reference BLAS, about 8x slower on the forward pass.
# clang + libclang-rt-14-dev (libFuzzer, clang's sanitizer runtimes): scripts/fuzz.sh; bookworm's
# clang is 14, and --no-install-recommends leaves its runtime library out.
# libxml2-utils (xmllint) + chromium: tests/e2e/report_html.sh checks and renders report.html.
if [[ "${GLVQ_SKIP_APT:-0}" != 1 ]] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=(); [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# shellcheck disable=SC2086
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${GLVQ_CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$(nproc)"
echo "setup: built $build_dir/glvq-worker"
