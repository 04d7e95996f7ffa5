#!/usr/bin/env bash
# The pipelined FP perplexity at np 2 and 3 equals the single-process value
# within 0.01%, every rank reads only its own tensors, and the plan covers
# every block once.
source "$(dirname "$0")/lib.bash"
common=(--config configs/tiny-llama.yaml --set quant.method=none --set eval.max_chunks=24)
$WORKER "${common[@]}" --set output_dir=$TMP/np1
p1=$(json $TMP/np1/report.json 'j["ppl_fp"]')
for np in 2 3; do
  "${MPIRUN[@]}" -np $np $WORKER "${common[@]}" --set output_dir=$TMP/np$np
  r=$TMP/np$np/report.json
  p=$(json $r 'j["ppl_fp"]')
  echo "np $np: ppl $p (np 1: $p1)"
  close "$p" "$p1" 0.0001 || fail "np $np perplexity $p differs from np 1 ($p1) by more than 0.01%"
  [[ $(json $r 'j["ranks"]') == $np ]] || fail "report says wrong rank count"
  [[ -f $TMP/np$np/logs/rank-$((np - 1)).log ]] || fail "no per-rank log for the last rank"
  # Every block once, contiguous, in rank order.
  python3 - "$TMP/np$np/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
blocks = [b for s in p["shards"] for b in range(s["first_block"], s["end_block"])]
assert blocks == list(range(p["n_layers"])), blocks
assert p["shards"][0]["has_embed"] and p["shards"][-1]["has_head"]
PY
  # Each rank mapped only its own blocks' tensors (9 per block) + embedding / head.
  python3 - "$r" "$TMP/np$np/plan.json" <<'PY'
import json, sys
r, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for s, pr in zip(p["shards"], r["per_rank"]):
    expect = 9 * (s["end_block"] - s["first_block"]) + (1 if s["has_embed"] else 0) + (2 if s["has_head"] else 0)
    assert pr["tensors_read"] == expect, (s, pr["tensors_read"], expect)
PY
done
