#!/usr/bin/env bash
# glvq-synth's scaled-down model (hidden 512, 2 blocks) through the whole job
# at np 2: the generator's output is a model the worker loads, calibrates,
# quantizes (GLVQ), gathers and validates, with the vocabulary (32000) larger
# than the tokenizer's (4096) as in the 70B-shaped runs.
source "$(dirname "$0")/lib.bash"
SYNTH=$BUILD/glvq-synth
m=$TMP/synth
$SYNTH --out $m --hidden 512 --intermediate 1408 --heads 8 --kv-heads 2 --vocab 32000 --blocks 2 --shard-gb 0.01 \
  --seed 3 >/dev/null 2>&1 || fail "glvq-synth failed"
[[ $(ls $m/model-*-of-*.safetensors | wc -l) -ge 2 ]] || fail "expected several shards"
# An existing output is not overwritten without --force.
expect_exit 2 "exists" $SYNTH --out $m --hidden 64 --intermediate 160 --heads 4 --kv-heads 2 --blocks 1
# A tokenizer whose ids do not fit the vocabulary is refused.
expect_exit 2 "pieces, more than --vocab" $SYNTH --out $TMP/small-vocab --hidden 64 --intermediate 160 --heads 4 \
  --kv-heads 2 --blocks 1 --vocab 1000
[[ ! -e $TMP/small-vocab ]] || fail "a refused generation left its output"

timeout 300 "${MPIRUN[@]}" -np 2 $WORKER --config configs/tiny-llama.yaml --set model.path=$m \
  --set quant.method=glvq --set quant.glvq.iters=5 --set calib.samples=4 --set calib.ctx=256 --set eval.ctx=256 \
  --set eval.max_chunks=4 --set device=cpu --set output_dir=$TMP/run >$TMP/run.log 2>&1 \
  || { tail -20 $TMP/run.log; fail "worker failed on the synthetic model"; }
r=$TMP/run/report.json
[[ -f $TMP/run/model.glvq.h5 ]] || fail "no checkpoint"
[[ $(json $r 'j["ranks"]') == 2 ]] || fail "ranks != 2"
python3 - "$r" <<'PY' || fail "report values out of range"
import json, math, sys
r = json.load(open(sys.argv[1]))
assert math.isfinite(r["ppl_fp"]) and math.isfinite(r["ppl_quant"]), r
assert 2.0 <= r["bits_per_weight"] <= 2.2, r["bits_per_weight"]
assert r["code_bits_per_weight"] == 2.0, r["code_bits_per_weight"]
PY
echo "synth_model: ok"
