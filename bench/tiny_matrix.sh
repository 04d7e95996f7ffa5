#!/usr/bin/env bash
# Runs the method x bits matrix on the embedded tiny-llama and prints the
# README's results table. Each run is a plain glvq-worker invocation; reports
# land in OUT/<name>/report.json.
#   bench/tiny_matrix.sh OUT [glvq-worker args...]     e.g. --set device=cuda
# GLVQ_BUILD_DIR picks the build (default build); MATRIX limits the rows (names below).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/tiny_matrix.sh OUT [extra glvq-worker args]}; shift
worker=${GLVQ_BUILD_DIR:-build}/glvq-worker
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
declare -A rows=(
  [fp]="--set quant.method=none"
  [rtn-w4]="--set quant.method=rtn --set quant.bits=4"
  [rtn-w3]="--set quant.method=rtn --set quant.bits=3"
  [rtn-w2]="--set quant.method=rtn --set quant.bits=2"
  [gptq-w4]="--set quant.method=gptq --set quant.bits=4 --set quant.sequential=false"
  [gptq-w3]="--set quant.method=gptq --set quant.bits=3 --set quant.sequential=false"
  [gptq-w2]="--set quant.method=gptq --set quant.bits=2 --set quant.sequential=false"
  [glvq8-w2-paper]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.code=box --set quant.glvq.incoherence=false --set quant.glvq.error_feedback=false --set quant.sequential=false"
  [glvq8-w2]="--set quant.method=glvq --set quant.bits=2"
  [glvq8-w3]="--set quant.method=glvq --set quant.bits=3"
  [glvq8-w4]="--set quant.method=glvq --set quant.bits=4"
  [glvq32-w2]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.dim=32 --set quant.glvq.group_size=0"
  [glvq32-w3]="--set quant.method=glvq --set quant.bits=3 --set quant.glvq.dim=32 --set quant.glvq.group_size=0"
  [glvq32-w4]="--set quant.method=glvq --set quant.bits=4 --set quant.glvq.dim=32 --set quant.glvq.group_size=0"
  [glvq32-w2-g128]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.dim=32 --set quant.glvq.group_size=128"
  # Ablations of glvq8-w2 (the defaults: shaped code), one option flipped each.
  [glvq8-w2-box]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.code=box"
  [glvq8-w3-box]="--set quant.method=glvq --set quant.bits=3 --set quant.glvq.code=box"
  [glvq8-w4-box]="--set quant.method=glvq --set quant.bits=4 --set quant.glvq.code=box"
  [glvq32-w2-box]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.code=box --set quant.glvq.dim=32 --set quant.glvq.group_size=0"
  [glvq8-w2-k1]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.candidates=1"
  [glvq8-w2-k16]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.candidates=16"
  [glvq8-w2-no-lloyd]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.lloyd_iters=0"
  [glvq8-w2-no-feedback]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.error_feedback=false"
  [glvq8-w2-no-incoherence]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.incoherence=false"
  [glvq8-w2-no-bit-alloc]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.bit_alloc=false"
  [glvq8-w2-propagate-fp]="--set quant.method=glvq --set quant.bits=2 --set calib.propagate=fp"
  [glvq8-w2-calib256]="--set quant.method=glvq --set quant.bits=2 --set calib.samples=256"
  [glvq8-w2-calib512]="--set quant.method=glvq --set quant.bits=2 --set calib.samples=512"
  [glvq8-w2-g64]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.group_size=64"
  [glvq8-w2-g32]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.group_size=32"
  [glvq8-w2-no-sequential]="--set quant.method=glvq --set quant.bits=2 --set quant.sequential=false"
  [glvq32-w2-no-sequential]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.dim=32 --set quant.glvq.group_size=0 --set quant.sequential=false"
  [gptq-w2-sequential]="--set quant.method=gptq --set quant.bits=2"
  [glvq8-w2-lloyd12]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.lloyd_iters=12"
  # The box code's own options (docs/GLVQ.md's earlier ablations).
  [glvq8-w2-box-nearest-plane]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.code=box --set quant.glvq.rounding=nearest_plane"
  [glvq8-w2-box-companding]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.code=box --set quant.glvq.companding=true"
  [glvq8-w2-box-no-learning]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.code=box --set quant.glvq.iters=0"
  # Block fine-tuning (quant.finetune.block, docs/GLVQ.md): each row is its base row with it on.
  [glvq8-w2-ft]="--set quant.method=glvq --set quant.bits=2 --set quant.finetune.block=true"
  [glvq32-w2-ft]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.dim=32 --set quant.glvq.group_size=0 --set quant.finetune.block=true"
  [glvq8-w2-box-ft]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.code=box --set quant.finetune.block=true"
  [gptq-w2-ft]="--set quant.method=gptq --set quant.bits=2 --set quant.sequential=false --set quant.finetune.block=true"
  [rtn-w2-ft]="--set quant.method=rtn --set quant.bits=2 --set quant.finetune.block=true"
  # QuIP#'s tuning of the not-yet-quantized linears (excludes quant.sequential)
  [glvq8-w2-ft-unquantized]="--set quant.method=glvq --set quant.bits=2 --set quant.sequential=false --set quant.finetune.block=true --set quant.finetune.unquantized=true"
  # End-to-end fine-tuning (quant.finetune.e2e, in gather), alone and after block fine-tuning.
  [glvq8-w2-e2e]="--set quant.method=glvq --set quant.bits=2 --set quant.finetune.e2e=true"
  [glvq8-w2-ft-e2e]="--set quant.method=glvq --set quant.bits=2 --set quant.finetune.block=true --set quant.finetune.e2e=true"
  [glvq32-w2-ft-e2e]="--set quant.method=glvq --set quant.bits=2 --set quant.glvq.dim=32 --set quant.glvq.group_size=0 --set quant.finetune.block=true --set quant.finetune.e2e=true"
)
order=${MATRIX:-"fp rtn-w4 rtn-w3 rtn-w2 gptq-w4 gptq-w3 gptq-w2 glvq8-w2-paper glvq8-w2 glvq8-w3 glvq8-w4 glvq32-w2"}
mkdir -p "$out"
# PRINT_ONLY=1: only print the table of reports already in OUT (e.g. after
# running subsets of the rows on several GPUs at once).
[[ ${PRINT_ONLY:-0} == 1 ]] && order_run="" || order_run=$order
for name in $order_run; do
  [[ -n ${rows[$name]:-} ]] || { echo "unknown row $name" >&2; continue; }
  echo "=== $name"
  # shellcheck disable=SC2086
  $worker --config configs/tiny-llama.yaml ${rows[$name]} --set output_dir="$out/$name" "$@" \
    >"$out/$name.log" 2>&1 || echo "$name failed (exit $?): see $out/$name.log"
  [[ -n ${DEADLINE:-} && $(date +%s) -ge $DEADLINE ]] && { echo "deadline reached after $name"; order_done=1; }
  [[ -n ${order_done:-} ]] && break
done
python3 - "$out" $order <<'PY'
import json, os, sys
out, names = sys.argv[1], sys.argv[2:]
print("| run | method | ppl | KL mean | KL p99 | top-1 | bits/weight (all overhead) | code bits | learn s/block | total s |")
print("|---|---|---|---|---|---|---|---|---|---|")
for n in names:
    p = os.path.join(out, n, "report.json")
    if not os.path.exists(p):
        print(f"| {n} | failed | | | | | | | | |"); continue
    r = json.load(open(p))
    ppl = r["ppl_quant"] if r["ppl_quant"] is not None else r["ppl_fp"]
    t = r["timings_s"]; blocks = r["config"] and 6
    learn = t.get("learn", 0) / max(1, blocks)
    q = r.get("quality") or {}
    kl = lambda k, f: format(q[k], f) if k in q else "-"
    print(f"| {n} | {r['method']} | {ppl:.4f} | {kl('kl_mean', '.4f')} | {kl('kl_p99', '.3f')} | {kl('top1', '.4f')} "
          f"| {r['bits_per_weight']:.4f} | {r['code_bits_per_weight']:.4f} | {learn:.1f} | {t['total']:.0f} |")
PY
