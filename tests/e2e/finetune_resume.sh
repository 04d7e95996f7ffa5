#!/usr/bin/env bash
# End-to-end fine-tuning is durable: gather writes the tuned layers to finetune/e2e-block-<k>.h5
# before the checkpoint, a --resume (here after a stop that lost the checkpoint) reuses them and
# reproduces the checkpoint without tuning again, and a changed e2e setting tunes again. A stop
# in the middle of the tuning (SIGTERM between steps) exits 3 with no checkpoint and no tuned
# files, and its --resume gives the uninterrupted run's checkpoint. Run as a pipeline over 3
# ranks, the tuning gives the single rank's weights.
source "$(dirname "$0")/lib.bash"
run=(--config configs/tiny-llama.yaml --set quant.method=rtn --set quant.bits=2 --set calib.samples=8
     --set calib.ctx=128 --set quant.finetune.e2e=true --set quant.finetune.e2e_steps=16
     --set quant.finetune.eval_every=2 --set eval.ctx=256 --set eval.max_chunks=1 --set threads=2)

$WORKER "${run[@]}" --set output_dir=$TMP/a >$TMP/a.log 2>&1 || { tail $TMP/a.log; fail "the e2e run failed"; }
[[ $(json $TMP/a/report.json 'j["finetune_e2e"]["steps"]') -ge 1 ]] || fail "report.json has no e2e steps"
for b in 0 1 2 3 4 5; do [[ -f $TMP/a/finetune/e2e-block-$b.h5 ]] || fail "finetune/e2e-block-$b.h5 missing"; done

# The same tuning as a pipeline over 3 ranks (rank 1 both receives and sends activations and
# gradients): each rank tunes its own blocks, and the weights are the single rank's, byte for byte.
"${MPIRUN[@]}" -np 3 $WORKER "${run[@]}" --set threads=1 --set output_dir=$TMP/p3 >$TMP/p3.log 2>&1 ||
  { tail $TMP/p3.log; fail "the e2e run on 3 ranks failed"; }
for r in 1 2; do
  grep -q "finetune e2e: held-out KL .* -> " $TMP/p3/logs/rank-$r.log || fail "rank $r did not take part in the tuning"
done
same_exported_weights $TMP/a/model.glvq.h5 $TMP/p3/model.glvq.h5 || fail "3 ranks tuned other weights than 1"
[[ $(json $TMP/p3/report.json 'j["finetune_e2e"]["heldout_kl_after"]') == \
   $(json $TMP/a/report.json 'j["finetune_e2e"]["heldout_kl_after"]') ]] || fail "3 ranks report another held-out KL"

cp -r $TMP/a $TMP/b
rm $TMP/b/model.glvq.h5 $TMP/b/report.json
$WORKER "${run[@]}" --set output_dir=$TMP/b --resume >$TMP/b.log 2>&1 || { tail $TMP/b.log; fail "resume failed"; }
grep -q "reusing the end-to-end fine-tuned layers" $TMP/b/logs/rank-0.log || fail "the tuned layers were not reused"
same_checkpoint $TMP/a/model.glvq.h5 $TMP/b/model.glvq.h5 || fail "the resumed checkpoint differs"
[[ $(json $TMP/b/report.json 'j["finetune_e2e"]["reused"]') == True ]] || fail "report.json does not say reused"
[[ $(json $TMP/b/report.json 'j["finetune_e2e"]["heldout_kl_after"]') == \
   $(json $TMP/a/report.json 'j["finetune_e2e"]["heldout_kl_after"]') ]] || fail "the reused report differs"

# A stop inside the tuning, then --resume: the uninterrupted checkpoint.
$WORKER "${run[@]}" --set output_dir=$TMP/i >$TMP/i.log 2>&1 &
pid=$!
wait_line "finetune e2e: step 2/16" $TMP/i.log $pid
kill -TERM $pid
set +e; wait $pid; rc=$?; set -e
[[ $rc == 3 ]] || { tail $TMP/i.log; fail "SIGTERM during e2e: exit $rc, expected 3"; }
[[ ! -e $TMP/i/model.glvq.h5 && -z $(ls $TMP/i/finetune/e2e-block-*.h5 2>/dev/null) ]] ||
  fail "a stopped tuning left a checkpoint or tuned layers"
$WORKER "${run[@]}" --set output_dir=$TMP/i --resume >$TMP/i2.log 2>&1 || { tail $TMP/i2.log; fail "resume after the stop failed"; }
same_checkpoint $TMP/a/model.glvq.h5 $TMP/i/model.glvq.h5 || fail "the checkpoint after a stop in e2e differs"

# Another e2e setting: tuned again, and the files replaced.
$WORKER "${run[@]}" --set quant.finetune.e2e_steps=4 --set output_dir=$TMP/b --resume >$TMP/c.log 2>&1 ||
  { tail $TMP/c.log; fail "the resume with other e2e steps failed"; }
grep -q "end-to-end fine-tuning again (setting e2e.steps differs" $TMP/b/logs/rank-0.log ||
  fail "a changed e2e_steps did not tune again"
[[ $(json $TMP/b/report.json 'j["finetune_e2e"]["steps"]') -le 4 ]] || fail "the second tuning did not run 4 steps"
[[ $(json $TMP/b/report.json 'j["finetune_e2e"].get("reused", False)') == False ]] || fail "reported as reused"
echo "finetune_resume: ok"
