#!/usr/bin/env bash
# Faults of a 2-rank job, injected at deterministic points by the test-only
# hook GLVQ_FAULT (jobs/interrupts.h), never by timing: a rank killed (SIGKILL)
# in calibrate, learn, gather or validate ends the whole job with a non-zero
# exit within the timeout and leaves no checkpoint or report that looks valid
# (validate's checkpoint is complete; its report is not written); SIGTERM and
# SIGUSR1 (Slurm preemption) end it with exit 3 keeping finished blocks; an
# exception ends it with exit 1; a rank stopped (SIGSTOP: alive but stuck)
# makes its pipeline neighbour give up after comm_timeout_s with exit 4. After
# each, --resume completes to a checkpoint whose datasets equal an
# uninterrupted run's. The method is GPTQ with calib.propagate quantized, so a
# resume that rebuilt the wrong statistics or activations (block k's H comes
# from blocks < k as quantized) would store other weights; RTN could not tell.
# GLVQ_FAULT_ARGS adds worker arguments to every run, e.g. on a 2-GPU machine
# "--set device=cuda --set transport=nccl" (the GPU/NCCL path; docs/RELIABILITY.md);
# GLVQ_E2E_COMPARE=export where hdf5-tools are missing (tests/e2e/lib.bash).
source "$(dirname "$0")/lib.bash"
small=(--config configs/tiny-llama.yaml --set quant.method=gptq --set quant.bits=4 --set calib.propagate=quantized
       --set calib.samples=4 --set calib.micro_batch=1 --set eval.max_chunks=2 --set eval.micro_batch=1 --set comm_timeout_s=5
       ${GLVQ_FAULT_ARGS:-})
run() {  # [FAULT=spec] run OUT [worker args...]: the job at np 2, bounded
  local out=$1; shift
  local x=(); [[ -n ${FAULT:-} ]] && x=(-x "GLVQ_FAULT=$FAULT")
  timeout 240 "${MPIRUN[@]}" -np 2 "${x[@]}" $WORKER "${small[@]}" --set output_dir=$out "$@" >>$out.log 2>&1
}

run $TMP/ref || { tail -20 $TMP/ref.log; fail "uninterrupted run failed"; }

# stage rank at action expected-exit
cases=(
  "calibrate 0 2 kill nonzero"
  "learn 1 1 kill nonzero"
  "gather 0 3 kill nonzero"
  "learn 1 2 term 3"
  "learn 0 1 usr1 3"
  "calibrate 1 3 throw 1"
  "validate 1 1 kill nonzero"
  "calibrate 1 1 stop 4"
  "validate 0 1 stop 4"
)
for c in "${cases[@]}"; do
  read -r stage rank at action want <<<"$c"
  name=$stage-$action-r$rank
  out=$TMP/$name
  set +e; FAULT="stage=$stage,rank=$rank,at=$at,action=$action" run $out; rc=$?; set -e
  [[ $rc != 124 ]] || fail "$name: the job hung until the timeout"
  if [[ $want == nonzero ]]; then [[ $rc != 0 ]] || fail "$name: exit 0 after a killed rank"
  else [[ $rc == "$want" ]] || { tail -20 $out.log; fail "$name: exit $rc, expected $want"; }; fi
  # validate runs on a complete checkpoint; only the report must be missing then.
  [[ ! -e $out/report.json && ( $stage == validate || ! -e $out/model.glvq.h5 ) ]] \
    || fail "$name: a checkpoint or report was left"
  [[ $want != 3 ]] || grep -q "preempted by SIG.*--resume" $out.log || fail "$name: no preemption message"
  [[ $want != 4 ]] || grep -q "waited [0-9]*s for .*rank.*comm_timeout_s: 5" $out.log \
    || fail "$name: no message from the transfer watchdog"
  run $out --resume || { tail -20 $out.log; fail "$name: --resume failed"; }
  same_checkpoint $TMP/ref/model.glvq.h5 $out/model.glvq.h5 || fail "$name: resumed checkpoint differs"
  ! ls $out/model.glvq.h5.tmp-* >/dev/null 2>&1 || fail "$name: the interrupted gather's temporary file is still there"
  echo "$name: exit $rc, resumed to the same checkpoint"
done

# The hook itself refuses a malformed value (it is a test tool, but a typo must not pass silently).
expect_exit 2 "GLVQ_FAULT" env GLVQ_FAULT="stage=learn" $WORKER "${small[@]}" --set output_dir=$TMP/bad
echo "faults: ok"
