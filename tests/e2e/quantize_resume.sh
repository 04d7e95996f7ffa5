#!/usr/bin/env bash
# A small quantization end to end under mpirun: statistics of a 3-rank run
# equal a 1-rank run's tensor by tensor (propagate fp), the checkpoint lists
# every quantized linear, --resume reuses every block and reproduces the same
# datasets (RTN with propagate fp, then GPTQ with propagate quantized, where
# the resumed blocks' weights depend on H and on the activations rebuilt
# through the reused quantized blocks), and a changed setting is refused with
# the key named.
source "$(dirname "$0")/lib.bash"
small=(--config configs/tiny-llama.yaml --set quant.method=rtn --set quant.bits=4 --set calib.samples=4
       --set calib.propagate=fp --set eval.max_chunks=2 --set calib.keep_stats=true)

$WORKER "${small[@]}" --set output_dir=$TMP/np1
"${MPIRUN[@]}" -np 3 $WORKER "${small[@]}" --set output_dir=$TMP/np3
for b in 0 1 2 3 4 5; do
  h5diff -p 1e-4 $TMP/np1/stats/block-$b.h5 $TMP/np3/stats/block-$b.h5 /attn_in /attn_in >/dev/null &&
  for t in o_in mlp_in down_in; do
    h5diff -p 1e-4 $TMP/np1/stats/block-$b.h5 $TMP/np3/stats/block-$b.h5 /$t /$t >/dev/null || fail "block $b $t differs"
  done || fail "H of block $b differs between 1 and 3 ranks"
done
echo "statistics of 1 and 3 ranks agree for all 6 blocks"
# By default a block's statistics are deleted once its block file is durable.
$WORKER "${small[@]}" --set calib.keep_stats=false --set output_dir=$TMP/dropped >$TMP/dropped.log 2>&1 ||
  { tail $TMP/dropped.log; fail "the run without keep_stats failed"; }
[[ -z $(ls $TMP/dropped/stats | grep '^block-') ]] || fail "calib.keep_stats=false left $(ls $TMP/dropped/stats)"
same_checkpoint $TMP/np1/model.glvq.h5 $TMP/dropped/model.glvq.h5 || fail "keep_stats changed the checkpoint"

r=$TMP/np3/report.json
[[ $(json $r 'j["bits_per_weight"]') == 4.25 ]] || fail "RTN w4 g128 must account 4.25 bits per weight"
python3 -c "import sys; sys.exit(0 if $(json $r 'j["ppl_quant"]') > $(json $r 'j["ppl_fp"]') else 1)" ||
  fail "quantized perplexity should exceed the FP one"
h5ls -r $TMP/np3/model.glvq.h5 >$TMP/h5ls.txt
n=$(grep -cE '^/layers/[0-9]+/(self_attn|mlp)\.[a-z_]+ +Group' $TMP/h5ls.txt)
[[ $n == 42 ]] || fail "checkpoint lists $n quantized linears, expected 42"
grep -q "^/tensors/model.embed_tokens.weight " $TMP/h5ls.txt || fail "embedding missing"

# Resume: a killed run's finished blocks are reused; the result is the same.
cp -r $TMP/np3 $TMP/resumed
rm $TMP/resumed/blocks/block-4.h5 $TMP/resumed/model.glvq.h5
head -c 20000 $TMP/np3/blocks/block-2.h5 >$TMP/resumed/blocks/block-2.h5   # a truncated block file
"${MPIRUN[@]}" -np 3 $WORKER "${small[@]}" --set output_dir=$TMP/resumed --resume >$TMP/resume.log 2>&1 ||
  { tail $TMP/resume.log; fail "resume failed"; }
grep -q "block 0 reused" $TMP/resumed/logs/rank-0.log || fail "block 0 was not reused"
grep -qE "block 2.*(again|invalid|truncat)" $TMP/resumed/logs/rank-*.log || fail "the truncated block 2 was not redone"
# Every dataset and attribute equal; only the wall time of re-learned layers ("seconds") may differ.
same_checkpoint $TMP/np3/model.glvq.h5 $TMP/resumed/model.glvq.h5 || fail "resumed checkpoint differs"

# Resume where statistics and activations matter: GPTQ with calib.propagate quantized.
# Block 1 is learned again from the output of block 0 as stored (reused from its file),
# block 4 (rank 2) from activations that came through the pipeline.
gq=(--config configs/tiny-llama.yaml --set quant.method=gptq --set quant.bits=3 --set calib.samples=4
    --set calib.ctx=512 --set calib.propagate=quantized --set eval.ctx=256 --set eval.max_chunks=1)
"${MPIRUN[@]}" -np 3 $WORKER "${gq[@]}" --set output_dir=$TMP/gq >$TMP/gq.log 2>&1 ||
  { tail $TMP/gq.log; fail "the GPTQ run failed"; }
cp -r $TMP/gq $TMP/gq-resumed
rm $TMP/gq-resumed/blocks/block-1.h5 $TMP/gq-resumed/blocks/block-4.h5 $TMP/gq-resumed/model.glvq.h5
"${MPIRUN[@]}" -np 3 $WORKER "${gq[@]}" --set output_dir=$TMP/gq-resumed --resume >$TMP/gq-resume.log 2>&1 ||
  { tail $TMP/gq-resume.log; fail "the GPTQ resume failed"; }
grep -q "block 0 reused" $TMP/gq-resumed/logs/rank-0.log || fail "GPTQ: block 0 was not reused"
same_checkpoint $TMP/gq/model.glvq.h5 $TMP/gq-resumed/model.glvq.h5 || fail "the resumed GPTQ checkpoint differs"
[[ $(json $TMP/gq/report.json 'j["ppl_quant"]') == $(json $TMP/gq-resumed/report.json 'j["ppl_quant"]') ]] ||
  fail "the resumed GPTQ run's perplexity differs"

expect_exit 2 "quant.bits differs" "${MPIRUN[@]}" -np 3 $WORKER "${small[@]}" --set quant.bits=3 \
  --set output_dir=$TMP/resumed --resume

# calib.activation_dtype=bfloat16: the rank holds (and saves) its activations in half the bytes,
# the result stays within rounding of the float32 run, a resume reproduces it, and switching
# the setting on a finished run is refused by name.
"${MPIRUN[@]}" -np 3 $WORKER "${gq[@]}" --set calib.activation_dtype=bfloat16 --set output_dir=$TMP/gq-bf16 \
  >$TMP/gq-bf16.log 2>&1 || { tail $TMP/gq-bf16.log; fail "the GPTQ run with bfloat16 activations failed"; }
for b in 0 2 4; do
  f32=$(stat -c %s $TMP/gq/stats/inputs-block-$b.h5) bf16=$(stat -c %s $TMP/gq-bf16/stats/inputs-block-$b.h5)
  (( bf16 * 10 < f32 * 6 )) || fail "inputs of block $b: $bf16 bytes in bfloat16 against $f32 in float32"
done
# With 4 x 512 calibration tokens GPTQ's result is chaotic: calib.seed 1 and 2 give 4.29 and 3.91
# against 4.01 for seed 0, bfloat16 4.06. At 32 x 512 bfloat16 moved it by -0.10%, seed 1 by +0.06%.
close $(json $TMP/gq-bf16/report.json 'j["ppl_quant"]') $(json $TMP/gq/report.json 'j["ppl_quant"]') 0.03 ||
  fail "bfloat16 activations moved the GPTQ perplexity by more than 3%"
cp -r $TMP/gq-bf16 $TMP/gq-bf16-resumed
rm $TMP/gq-bf16-resumed/blocks/block-1.h5 $TMP/gq-bf16-resumed/blocks/block-4.h5 $TMP/gq-bf16-resumed/model.glvq.h5
"${MPIRUN[@]}" -np 3 $WORKER "${gq[@]}" --set calib.activation_dtype=bfloat16 --set output_dir=$TMP/gq-bf16-resumed \
  --resume >$TMP/gq-bf16-resume.log 2>&1 || { tail $TMP/gq-bf16-resume.log; fail "the bfloat16 resume failed"; }
grep -q "reusing .*inputs-block-2" $TMP/gq-bf16-resumed/logs/rank-1.log || fail "the bfloat16 inputs were not reused"
same_checkpoint $TMP/gq-bf16/model.glvq.h5 $TMP/gq-bf16-resumed/model.glvq.h5 || fail "the resumed bfloat16 checkpoint differs"
expect_exit 2 "activation_dtype" "${MPIRUN[@]}" -np 3 $WORKER "${gq[@]}" --set output_dir=$TMP/gq-bf16 --resume
