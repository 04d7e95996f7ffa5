#!/usr/bin/env bash
# Preemption answered within seconds wherever the job is (issue 24): SIGTERM or
# SIGUSR1 sent at a random point inside a long GLVQ learn (glvq-synth model,
# hidden 256 by default, one shaped-code layer learning for seconds) ends the job
# with exit 3 within BOUND_S, at np 1 (the worker alone) and at np 2 (SIGTERM to
# every rank, as srun sends it; SIGUSR1 to mpirun and to the ranks it started, as
# the batch script does: Open MPI 4.1.6 does not forward it; SIGTERM to rank 1
# alone, whose neighbour may be blocked in a wait). The rank that noticed says where (a loop inside the block, not a boundary); no
# temporary file is left; --resume then completes to a checkpoint equal to the
# uninterrupted run's (same_checkpoint), without relearning a damaged block.
# The same inside validate. Unlike faults.sh the signal times are random (the
# seed is printed: GLVQ_PREEMPT_SEED=N repeats a run); the figures printed are
# the latencies measured. On the GPU: GLVQ_E2E_DEVICE=cuda, with GLVQ_PREEMPT_CODE=box
# (its learning runs on the GPU) and GLVQ_PREEMPT_HIDDEN=2048 so that a block still learns for
# seconds there; GLVQ_PREEMPT_EVAL_CHUNKS keeps validate long enough to be signalled.
source "$(dirname "$0")/lib.bash"
BOUND_S=${GLVQ_PREEMPT_BOUND_S:-5}
seed=${GLVQ_PREEMPT_SEED:-$RANDOM}
device=${GLVQ_E2E_DEVICE:-cpu}
code=${GLVQ_PREEMPT_CODE:-shaped}
hidden=${GLVQ_PREEMPT_HIDDEN:-256}
eval_chunks=${GLVQ_PREEMPT_EVAL_CHUNKS:-16}
RANDOM=$seed
echo "preempt_latency: seed $seed, bound ${BOUND_S}s, device $device, code $code, hidden $hidden"

m=$TMP/synth
$BUILD/glvq-synth --out $m --hidden $hidden --intermediate $((2 * hidden)) --heads 4 --kv-heads 2 --vocab 4096 --blocks 2 \
  --seed 5 >/dev/null 2>&1 || fail "glvq-synth failed"
cfg=(--config configs/tiny-llama.yaml --set model.path=$m --set device=$device --set quant.method=glvq
     --set quant.glvq.code=$code --set calib.samples=4 --set calib.ctx=128
     --set calib.micro_batch=1 --set eval.ctx=128 --set eval.max_chunks=$eval_chunks --set eval.micro_batch=1
     --set comm_timeout_s=60)
[[ $code == shaped ]] && cfg+=(--set quant.glvq.lloyd_iters=3)

# launch NP OUT [args...]: the job in the background; PID is the worker's (np 1) or mpirun's.
launch() {
  local np=$1 out=$2; shift 2
  if [[ $np == 1 ]]; then
    $WORKER "${cfg[@]}" --set output_dir=$out "$@" >>$out.log 2>&1 &
  else
    "${MPIRUN[@]}" -np $np $WORKER "${cfg[@]}" --set output_dir=$out "$@" >>$out.log 2>&1 &
  fi
  PID=$!
}
# finish [LIMIT_S]: waits for the job (killing it past LIMIT_S); RC is its exit code.
finish() {
  local limit=${1:-300} t=0
  while kill -0 $PID 2>/dev/null && ((t < limit * 10)); do sleep 0.1; t=$((t + 1)); done
  kill -0 $PID 2>/dev/null && { kill -9 $PID; wait $PID 2>/dev/null; fail "the job was still running after ${limit}s"; }
  set +e; wait $PID; RC=$?; set -e
}
now() { date +%s.%N; }
ranks() { pgrep -P $PID -x glvq-worker || true; }  # mpirun starts the ranks of one node itself
# wait_for PATTERN FILE [FROM]: until FILE has a line matching PATTERN after line FROM (60 s at most).
wait_for() {
  local t=0
  until tail -n +$((${3:-0} + 1)) "$2" 2>/dev/null | grep -qE -- "$1"; do
    sleep 0.05; t=$((t + 1)); ((t < 1200)) || fail "no /$1/ in $2 after 60s"
    kill -0 $PID 2>/dev/null || fail "the job ended before /$1/ (see $2)"
  done
}

# The uninterrupted reference at np 2, and how long a block takes to learn there.
launch 2 $TMP/ref; finish
[[ $RC == 0 ]] || { tail -20 $TMP/ref.log; fail "uninterrupted run: exit $RC"; }
learn_s=$(sed -nE 's/.*learn: block [0-9]+ done in ([0-9.]+)s.*/\1/p' $TMP/ref/logs/rank-*.log | sort -n | head -1)
echo "reference: a block learns in ${learn_s}s"
awk -v s=$learn_s 'BEGIN { exit !(s >= 2) }' || fail "a block learns in ${learn_s}s: too short to aim a signal into"

# signal_in NAME NP HOW: starts a run, waits until the last rank's first layer is being learned
# (rank 0's statistics of its first block are written just before), sleeps a random part of a
# block's learning, signals (HOW: term-all, usr1-launcher, term-rank1), and checks the exit.
signal_in() {
  local name=$1 np=$2 how=$3 out=$TMP/$1
  launch $np $out
  wait_for "learn: .* relative loss" $out/logs/rank-0.log  # the first layer learned: inside a block now
  local delay; delay=$(awk -v s=$learn_s -v r=$RANDOM 'BEGIN { printf "%.2f", (0.05 + 0.35 * r / 32767) * s }')
  sleep $delay
  local t0; t0=$(now)
  case $how in
    term-all) if [[ $np == 1 ]]; then kill -TERM $PID; else kill -TERM $(ranks); fi ;;
    usr1-launcher) kill -USR1 $PID; pkill -USR1 -P $PID -x glvq-worker ;;  # as slurm/quantize_70b.sh
    term-rank1) kill -TERM $(pgrep -P $PID -x glvq-worker | sort -n | tail -1) ;;
  esac
  finish 60
  local dt; dt=$(awk -v a=$t0 -v b=$(now) 'BEGIN { printf "%.2f", b - a }')
  [[ $RC == 3 ]] || { tail -20 $out.log; fail "$name: exit $RC after the signal, expected 3"; }
  awk -v d=$dt -v b=$BOUND_S 'BEGIN { exit !(d <= b) }' || fail "$name: exit 3 took ${dt}s, more than ${BOUND_S}s"
  grep -qE "preempted by SIG(TERM|USR1) (in |while waiting for )" $out/logs/rank-*.log \
    || fail "$name: no rank logged where it was preempted"
  ! ls $out/blocks/*.tmp-* $out/stats/*.tmp-* $out/model.glvq.h5* $out/report.json >/dev/null 2>&1 \
    || fail "$name: a temporary file, checkpoint or report was left: $(ls $out $out/blocks $out/stats)"
  echo "$name: signal ${delay}s into a block, exit 3 after ${dt}s ($(grep -ohE "preempted by SIG[A-Z0-9]+ (in|while waiting for) [^:]*" \
    $out/logs/rank-*.log | sort -u | tr '\n' ';'))"
}
# resume NAME: --resume completes the run to the reference's checkpoint, reusing what was finished.
resume() {
  local out=$TMP/$1
  launch 2 $out --resume; finish
  [[ $RC == 0 ]] || { tail -20 $out.log; fail "$1: --resume exit $RC"; }
  ! grep -q "learning block .* again" $out/logs/rank-*.log || fail "$1: a block file left by the signal was invalid"
  same_checkpoint $TMP/ref/model.glvq.h5 $out/model.glvq.h5 || fail "$1: the resumed checkpoint differs"
}

signal_in np2-term-all 2 term-all
resume np2-term-all
signal_in np2-usr1-mpirun 2 usr1-launcher  # quantize_70b.sh with LAUNCH=mpirun
signal_in np2-term-rank1 2 term-rank1
signal_in np1-term 1 term-all

# Inside validate: the checkpoint is complete, only the report must be missing; --resume validates.
out=$TMP/np2-term-all
rm -f $out/report.json
n0=$(wc -l <$out/logs/rank-0.log)  # the log goes on from the earlier runs
launch 2 $out --resume --stage validate
wait_for "glvq-worker .*: rank 0/2" $out/logs/rank-0.log $n0  # set up; the plan and validate follow
sleep 0.$((RANDOM % 5))
r=$(ranks); [[ -n $r ]] || fail "validate ended before the signal"
t0=$(now); kill -TERM $r; finish 60
dt=$(awk -v a=$t0 -v b=$(now) 'BEGIN { printf "%.2f", b - a }')
[[ $RC == 3 ]] || { tail -20 $out.log; fail "validate: exit $RC after SIGTERM, expected 3"; }
awk -v d=$dt -v b=$BOUND_S 'BEGIN { exit !(d <= b) }' || fail "validate: exit 3 took ${dt}s, more than ${BOUND_S}s"
[[ ! -e $out/report.json ]] || fail "validate: a report was written"
echo "validate: exit 3 after ${dt}s"
launch 2 $out --resume --stage validate; finish
[[ $RC == 0 && -f $out/report.json ]] || { tail -20 $out.log; fail "validate --resume: exit $RC"; }
echo "preempt_latency: ok"
