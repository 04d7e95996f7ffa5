#!/usr/bin/env bash
# glvq-generate and glvq-bench on the CPU, from a checkpoint the worker wrote (tiny-llama,
# RTN 4 bits): perplexity through glvq-generate's forward equals validate's within 0.01%;
# generation streams text and ends with the summary line, greedy and seeded sampling are
# reproducible; bad input (missing/truncated checkpoint, model directory gone or of
# another model, prompt empty or longer than the context) fails with a message and
# nothing on stdout; glvq-bench prints its JSON table. About 40 s on 2 cores.
source "$(dirname "$0")/lib.bash"
GEN=$BUILD/glvq-generate
BENCH=$BUILD/glvq-bench
$WORKER --config configs/tiny-llama.yaml --set quant.method=rtn --set quant.bits=4 --set calib.samples=4 --set calib.ctx=256 \
  --set eval.ctx=256 --set eval.max_chunks=4 --set output_dir=$TMP/q >$TMP/q.log 2>&1 ||
  { tail $TMP/q.log; fail "quantization failed"; }
CK=$TMP/q/model.glvq.h5

# perplexity: glvq-generate's forward against validate's
$GEN --checkpoint $CK --device cpu --perplexity data/eval.txt --ctx 256 --max-chunks 4 >$TMP/ppl.out ||
  fail "glvq-generate --perplexity failed"
g=$(sed -n 's/.*perplexity \([0-9.]*\) over 4 chunks of 256 tokens.*/\1/p' $TMP/ppl.out)
v=$(json $TMP/q/report.json 'j["ppl_quant"]')
echo "validate: $v; glvq-generate: $g"
[[ -n $g ]] || { cat $TMP/ppl.out; fail "no perplexity line"; }
close "$g" "$v" 1e-4 || fail "glvq-generate's perplexity $g differs from validate's $v by more than 0.01%"

# generation: text, then the summary line; greedy twice gives the same text; so does a seeded sample
gen() { $GEN --checkpoint $CK --device cpu --prompt "Once upon a time" --max-new-tokens 24 --ignore-eos "$@"; }
gen >$TMP/g1.out || fail "generation failed"
gen >$TMP/g2.out
tail -1 $TMP/g1.out | grep -qE '^glvq-generate: prompt [0-9]+ tokens, generated 24 tokens, prefill [0-9.]+ tok/s, decode [0-9.]+ tok/s \(cpu; 42 dense fp32\)$' ||
  { cat $TMP/g1.out; fail "no summary line"; }
[[ $(head -n -1 $TMP/g1.out | tr -d '[:space:]' | wc -c) -gt 10 ]] || { cat $TMP/g1.out; fail "no text generated"; }
diff <(head -n -1 $TMP/g1.out) <(head -n -1 $TMP/g2.out) >/dev/null || fail "greedy generation is not reproducible"
gen --temperature 0.8 --top-p 0.9 --seed 3 >$TMP/s1.out && gen --temperature 0.8 --top-p 0.9 --seed 3 >$TMP/s2.out ||
  fail "sampling failed"
diff <(head -n -1 $TMP/s1.out) <(head -n -1 $TMP/s2.out) >/dev/null || fail "seeded sampling is not reproducible"
echo "greedy: $(head -n -1 $TMP/g1.out | tr '\n' ' ')"

# bad input: exit code, message, and nothing on stdout
refuse() {  # refuse CODE PATTERN ARGS...
  local code=$1 pattern=$2; shift 2
  set +e; $GEN "$@" >$TMP/r.out 2>$TMP/r.err; local rc=$?; set -e
  [[ $rc == "$code" ]] || { cat $TMP/r.err; fail "exit $rc, expected $code: $*"; }
  grep -qE -- "$pattern" $TMP/r.err || { cat $TMP/r.err; fail "message lacks /$pattern/: $*"; }
  [[ ! -s $TMP/r.out ]] || { cat $TMP/r.out; fail "stdout not empty on failure: $*"; }
}
refuse 1 "$TMP/absent.h5" --checkpoint $TMP/absent.h5 --prompt hi --device cpu
head -c 200000 $CK >$TMP/cut.h5
refuse 1 "cut.h5.*truncated" --checkpoint $TMP/cut.h5 --prompt hi --device cpu
refuse 1 "$TMP/nodir.*does not exist" --checkpoint $CK --model $TMP/nodir --prompt hi --device cpu
mkdir -p $TMP/other && cp models/tiny-llama/tokenizer.model $TMP/other/
python3 -c "import json,sys; c=json.load(open('models/tiny-llama/config.json')); c['num_hidden_layers']=4; json.dump(c, open(sys.argv[1],'w'))" $TMP/other/config.json
refuse 1 "other/config.json does not match.*num_hidden_layers" --checkpoint $CK --model $TMP/other --prompt hi --device cpu
# the recorded model.path is relative to where the worker ran: from elsewhere it is gone
(cd $TMP && set +e; $OLDPWD/$GEN --checkpoint $CK --prompt hi --device cpu >$TMP/r.out 2>$TMP/r.err; echo $? >$TMP/rc)
[[ $(cat $TMP/rc) == 1 ]] && grep -q "models/tiny-llama recorded in .* does not exist" $TMP/r.err && [[ ! -s $TMP/r.out ]] ||
  { cat $TMP/r.err; fail "a checkpoint whose model directory is gone was not refused"; }
refuse 2 "prompt is empty" --checkpoint $CK --prompt "" --device cpu
: >$TMP/empty.txt
refuse 1 "empty.txt" --checkpoint $CK --prompt-file $TMP/empty.txt --device cpu
python3 -c "print('once upon a time ' * 1500)" >$TMP/long.txt
refuse 2 "longer than the model's context" --checkpoint $CK --prompt-file $TMP/long.txt --device cpu
refuse 2 "top-p" --checkpoint $CK --prompt hi --top-p 1.5 --device cpu

# glvq-bench: the JSON table on the CPU (a smoke test; the speed figures come from the GPU)
$BENCH --checkpoint $CK --device cpu -p 16 -n 4 -b 1,2 -r 2 -o json >$TMP/b.json 2>$TMP/b.err ||
  { cat $TMP/b.err; fail "glvq-bench failed"; }
python3 - $TMP/b.json <<'PY' || fail "glvq-bench JSON is not as documented"
import json, sys
rows = json.load(open(sys.argv[1]))
tests = [r["test"] for r in rows]
assert tests == ["pp16", "tg4", "tg4 b2"], tests
for r in rows:
    assert len(r["samples_ts"]) == 2 and r["avg_ts"] > 0 and r["copy_gbps"] > 0, r
    assert abs(r["bits_per_weight"] - 4.25) < 0.01 and r["weights"] == "rtn", r
assert rows[1]["step_bytes"] > 44e6, rows[1]   # 11M fp32 weights (dense on the CPU) are read every step
PY
echo "generate: ok"
