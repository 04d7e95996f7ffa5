#!/usr/bin/env bash
# glvq-synth's scaled-down model (hidden 512, 2 blocks) through the whole job
# at np 2: the generator's output is a model the worker loads, calibrates,
# quantizes (GLVQ), gathers and validates, with the vocabulary (32000) larger
# than the tokenizer's (4096) as in the 70B-shaped runs.
source "$(dirname "$0")/lib.bash"
SYNTH=$BUILD/glvq-synth
m=$TMP/synth
$SYNTH --out $m --hidden 512 --intermediate 1408 --heads 8 --kv-heads 2 --vocab 32000 --blocks 2 \
  --shard-bytes 10MB --seed 3 >/dev/null 2>&1 || fail "glvq-synth failed"
[[ $(ls $m/model-*-of-*.safetensors | wc -l) -ge 2 ]] || fail "expected several shards"
# config.json is the preset's with the overrides applied.
[[ $(json $m/config.json '(j["hidden_size"], j["num_hidden_layers"], j["vocab_size"], j["rope_theta"] == 1e4,
  j["rms_norm_eps"] == 1e-5, j["max_position_embeddings"], j["torch_dtype"], j["architectures"])') \
  == "(512, 2, 32000, True, True, 4096, 'bfloat16', ['LlamaForCausalLM'])" ]] || fail "config.json: $(cat $m/config.json)"
expect_exit 2 "llama2-70b" $SYNTH --out $TMP/bad-preset --preset llama2-13b --hidden 64
# An existing output is not overwritten without --force.
expect_exit 2 "exists" $SYNTH --out $m --hidden 64 --intermediate 160 --heads 4 --kv-heads 2 --blocks 1
# A tokenizer whose ids do not fit the vocabulary is refused.
expect_exit 2 "pieces, more than --vocab" $SYNTH --out $TMP/small-vocab --hidden 64 --intermediate 160 --heads 4 \
  --kv-heads 2 --blocks 1 --vocab 1000
[[ ! -e $TMP/small-vocab ]] || fail "a refused generation left its output"

# The worker's side of the rule: ids need only be below vocab_size, and one that is not is refused by
# name. (No tokenizer here has more pieces than a model that synth accepts, so config.json is edited.)
$SYNTH --out $TMP/v --hidden 64 --intermediate 160 --heads 4 --kv-heads 2 --vocab 4096 --blocks 1 >/dev/null 2>&1 \
  || fail "glvq-synth failed"
python3 -c "import json,sys; p=sys.argv[1]; j=json.load(open(p)); j['vocab_size']=3000; json.dump(j,open(p,'w'))" \
  $TMP/v/config.json
expect_exit 1 "data/calib.txt: token id [0-9]+ is outside the model's vocabulary \(3000\)" timeout 120 $WORKER \
  --config configs/tiny-llama.yaml --set model.path=$TMP/v --set quant.method=rtn --set output_dir=$TMP/run-v
[[ ! -e $TMP/run-v/report.json ]] || fail "a refused run wrote report.json"

timeout 300 "${MPIRUN[@]}" -np 2 $WORKER --config configs/tiny-llama.yaml --set model.path=$m \
  --set quant.method=glvq --set quant.glvq.iters=5 --set quant.glvq.lloyd_iters=1 --set calib.samples=4 --set calib.ctx=256 --set eval.ctx=256 \
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
