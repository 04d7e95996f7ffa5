#!/usr/bin/env bash
# glvq-export's directory is the checkpoint's model: evaluated by glvq-worker
# as a plain FP model (quant.method none, same protocol) it gives the
# perplexity that validate measured on model.glvq.h5, within 0.01% (the export
# rounds the dequantized weights to the model's bf16); export refuses a
# truncated checkpoint without writing anything.
source "$(dirname "$0")/lib.bash"
small=(--config configs/tiny-llama.yaml --set quant.method=rtn --set quant.bits=4 --set calib.samples=4
       --set eval.max_chunks=8)
$WORKER "${small[@]}" --set output_dir=$TMP/q >$TMP/q.log 2>&1 || { tail $TMP/q.log; fail "quantization failed"; }
$BUILD/glvq-export $TMP/q/model.glvq.h5 $TMP/hf >/dev/null || fail "export failed"
$WORKER "${small[@]}" --set quant.method=none --set model.path=$TMP/hf --set output_dir=$TMP/e >$TMP/e.log 2>&1 ||
  { tail $TMP/e.log; fail "evaluating the export failed"; }
q=$(json $TMP/q/report.json 'j["ppl_quant"]'); e=$(json $TMP/e/report.json 'j["ppl_fp"]')
echo "validate on the checkpoint: $q; the exported model: $e"
close "$e" "$q" 1e-4 || fail "exported model's perplexity $e differs from the checkpoint's $q by more than 0.01%"

head -c 100000 $TMP/q/model.glvq.h5 >$TMP/cut.h5
expect_exit 1 "cut.h5" $BUILD/glvq-export $TMP/cut.h5 $TMP/hf2
[[ ! -e $TMP/hf2/model.safetensors ]] || fail "export of a truncated file wrote weights"
echo "export_perplexity: ok"
