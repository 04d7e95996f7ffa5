#!/usr/bin/env bash
# The same glvq-worker job on the CPU and on the GPU: wall time per stage and
# the quantized perplexity of each checkpoint (they must agree within 1%).
#   bench/gpu_vs_cpu.sh OUT [glvq-worker args...]   (config defaults to configs/tiny-llama.yaml)
# GLVQ_BUILD_DIR picks the build (default build). Reports: OUT/{cpu,cuda}/report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/gpu_vs_cpu.sh OUT [extra glvq-worker args]}; shift
worker=${GLVQ_BUILD_DIR:-build}/glvq-worker
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
mkdir -p "$out"
for dev in cuda cpu; do
  echo "=== device $dev"
  "$worker" --config configs/tiny-llama.yaml --set device=$dev --set output_dir="$out/$dev" "$@" >"$out/$dev.log" 2>&1 \
    || { tail -20 "$out/$dev.log"; echo "device $dev failed" >&2; exit 1; }
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
r = {d: json.load(open(f"{out}/{d}/report.json")) for d in ("cpu", "cuda")}
stages = [s for s in ("plan", "calibrate", "learn", "gather", "validate", "total") if s in r["cpu"]["timings_s"]]
print("| stage | CPU s | GPU s | speed-up |")
print("|---|---|---|---|")
for s in stages:
    c, g = r["cpu"]["timings_s"][s], r["cuda"]["timings_s"][s]
    print(f"| {s} | {c:.1f} | {g:.1f} | {c / max(g, 1e-9):.1f}x |")
pc, pg = r["cpu"]["ppl_quant"], r["cuda"]["ppl_quant"]
print(f"ppl_quant CPU {pc:.4f}  GPU {pg:.4f}  relative difference {abs(pg - pc) / pc * 100:.3f}%")
print(f"ppl_fp    CPU {r['cpu']['ppl_fp']:.4f}  GPU {r['cuda']['ppl_fp']:.4f}")
print(f"bits/weight CPU {r['cpu']['bits_per_weight']:.4f}  GPU {r['cuda']['bits_per_weight']:.4f}")
sys.exit(0 if abs(pg - pc) <= 0.01 * pc else 1)
PY
