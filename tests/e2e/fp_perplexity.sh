#!/usr/bin/env bash
# quant.method none on the embedded tiny-llama reproduces reference.json's FP
# perplexity (ctx 1024, all 329 chunks) within 0.3%, single process.
source "$(dirname "$0")/lib.bash"
$WORKER --config configs/tiny-llama.yaml --set quant.method=none --set output_dir=$TMP/fp
r=$TMP/fp/report.json
ref=$(json models/tiny-llama/reference.json 'j["eval_shared"]["ppl"]')
ppl=$(json $r 'j["ppl_fp"]')
echo "ppl_fp $ppl (reference $ref), chunks $(json $r 'j["eval_chunks"]'), tokens $(json $r 'j["eval_tokens"]')"
[[ $(json $r 'j["eval_chunks"]') == 329 ]] || fail "expected 329 chunks"
[[ $(json $r 'j["eval_tokens"]') == $(json models/tiny-llama/reference.json 'j["eval_shared"]["tokens"]') ]] || fail "token count differs from reference.json"
close "$ppl" "$ref" 0.003 || fail "ppl_fp $ppl not within 0.3% of $ref"
[[ $(json $r 'j["ppl_quant"]') == None ]] || fail "ppl_quant must be null for method none"
[[ $(json $r 'j["bits_per_weight"]') == 16.0 ]] || fail "bits_per_weight must be 16 for method none"
