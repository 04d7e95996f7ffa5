#!/usr/bin/env bash
# Builds glvq on a CUDA machine with a pip LibTorch (e.g. the H100 box:
# Ubuntu 24.04, LibTorch 2.11+cu130 in /opt/torch/.venv). Usage:
#   scripts/gpu_build.sh [BUILD_DIR]            (default /tmp/glvq-build)
# Header-only dependencies missing there can be supplied in .deps/include.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-/tmp/glvq-build}; shift || true
py=${PYTHON:-python3}
[[ -x /opt/torch/.venv/bin/python3 ]] && py=/opt/torch/.venv/bin/python3
tp=$($py -c 'import torch, os; print(os.path.dirname(torch.__file__))')
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$tp/share/cmake" \
  -DGLVQ_EXTRA_INCLUDE="$PWD/.deps/include" -DCMAKE_CUDA_ARCHITECTURES=90 -DTORCH_CUDA_ARCH_LIST=9.0 "$@" >"$build.cmake.log" 2>&1 \
  || { tail -40 "$build.cmake.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" 2>&1 | grep -E "error|warning: unused|FAILED" | head -60
[[ -x $build/glvq-worker ]]
