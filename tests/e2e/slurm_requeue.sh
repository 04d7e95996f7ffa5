#!/usr/bin/env bash
# slurm/quantize_70b.sh's preemption logic without a cluster: a launcher that
# exits 3 (glvq-worker's "preempted") makes the script ask Slurm to requeue the
# job (a stand-in scontrol records its arguments) and exit 3; a rerun into an
# output directory that holds a plan passes --resume; a failure (exit 1) is
# passed through without a requeue; SIGUSR1 to the batch shell reaches the ranks,
# also under LAUNCH=mpirun with an mpirun that does not forward it (Open MPI 4.1.6);
# a launcher that exits 0 counts only if the run wrote report.json (srun exits 0
# when its tasks failed to launch).
source "$(dirname "$0")/lib.bash"
bin=$TMP/bin; mkdir -p $bin
cat >$bin/scontrol <<'SH'
#!/usr/bin/env bash
echo "$*" >>"$FAKE_LOG.scontrol"
SH
cat >$bin/srun <<'SH'
#!/usr/bin/env bash
# Stands in for srun + glvq-worker: records the worker's arguments, then either exits
# with FAKE_RC or waits for SIGUSR1 and exits 3 the way preempted ranks do.
echo "$*" >>"$FAKE_LOG.srun"
if [[ ${FAKE_WAIT_SIGNAL:-0} == 1 ]]; then
  trap 'echo got-usr1 >>"$FAKE_LOG.srun"; kill $! 2>/dev/null; exit 3' USR1
  echo ready >"$FAKE_LOG.ready"  # a FIFO: the test blocks on it until this point (trap installed)
  sleep 60 & wait $!             # the signal's trap ends the wait; 60 s bounds it
  exit 9
fi
[[ ${FAKE_REPORT:-0} == 1 ]] && echo '{}' >"$OUT/report.json"
exit "$FAKE_RC"
SH
chmod +x $bin/*
export PATH=$bin:$PATH FAKE_LOG=$TMP/log SLURM_JOB_ID=4242 OUT=$TMP/out MODEL=/nowhere
mkdir -p $OUT

set +e; FAKE_RC=3 bash slurm/quantize_70b.sh >$TMP/o1 2>&1; rc=$?; set -e
[[ $rc == 3 ]] || fail "preempted run: script exit $rc, expected 3"
grep -qx "requeue 4242" $FAKE_LOG.scontrol || fail "no 'scontrol requeue 4242' after exit 3"
! grep -q -- "--resume" $FAKE_LOG.srun || fail "first run must not resume"

touch $OUT/plan.json; rm -f $FAKE_LOG.*
set +e; FAKE_RC=1 bash slurm/quantize_70b.sh >$TMP/o2 2>&1; rc=$?; set -e
[[ $rc == 1 ]] || fail "failed run: script exit $rc, expected 1"
[[ ! -e $FAKE_LOG.scontrol ]] || fail "a failure (not a preemption) was requeued"
grep -q -- "--resume" $FAKE_LOG.srun || fail "a rerun into an output with plan.json must pass --resume"

rm -f $FAKE_LOG.* $OUT/report.json
set +e; FAKE_RC=0 bash slurm/quantize_70b.sh >$TMP/o4 2>&1; rc=$?; set -e
[[ $rc == 1 ]] || fail "a launcher exiting 0 without a report: script exit $rc, expected 1"
grep -q "wrote no .*report.json" $TMP/o4 || fail "the script does not say the job wrote no report.json"
set +e; FAKE_RC=0 FAKE_REPORT=1 bash slurm/quantize_70b.sh >$TMP/o5 2>&1; rc=$?; set -e
[[ $rc == 0 ]] || { cat $TMP/o5; fail "a run that wrote its report: script exit $rc, expected 0"; }
ls -A $OUT | grep -q '^\.launch' && fail "the launch marker was left in output_dir"

rm -f $FAKE_LOG.*
mkfifo $FAKE_LOG.ready
FAKE_WAIT_SIGNAL=1 bash slurm/quantize_70b.sh >$TMP/o3 2>&1 &
script=$!
timeout 60 cat $FAKE_LOG.ready >/dev/null || fail "the stand-in launcher did not start"  # no sleep: an event
kill -USR1 $script
set +e; wait $script; rc=$?; set -e
grep -q got-usr1 $FAKE_LOG.srun || fail "SIGUSR1 to the batch shell was not forwarded to the launcher"
[[ $rc == 3 ]] && grep -qx "requeue 4242" $FAKE_LOG.scontrol || fail "signalled run: exit $rc, requeue missing"
# LAUNCH=mpirun, an mpirun that ignores SIGUSR1 (does not forward it): the script signals
# the ranks it started on this node itself.
cat >$bin/mpirun <<'SH'
#!/usr/bin/env bash
# Not trap '': an ignored signal stays ignored in the children, which could not trap it.
trap 'echo ignored-usr1 >>"$FAKE_LOG.mpirun"' USR1
echo "$*" >>"$FAKE_LOG.mpirun"
glvq-worker "$(dirname "$0")/rank.sh" &
rank=$!
while :; do wait $rank; rc=$?; kill -0 $rank 2>/dev/null || break; done
exit $rc
SH
# The rank's process must be named glvq-worker (the script finds ranks by name; a script's
# process is named after its interpreter): a copy of bash under that name runs it.
cp "$(command -v bash)" $bin/glvq-worker
cat >$bin/rank.sh <<'SH'
trap 'echo got-usr1 >>"$FAKE_LOG.rank"; kill $! 2>/dev/null; exit 3' USR1
echo ready >"$FAKE_LOG.ready"
sleep 60 & wait $!
exit 9
SH
chmod +x $bin/mpirun
rm -f $FAKE_LOG.*
mkfifo $FAKE_LOG.ready
LAUNCH=mpirun bash slurm/quantize_70b.sh >$TMP/o6 2>&1 &
script=$!
timeout 60 cat $FAKE_LOG.ready >/dev/null || fail "the stand-in rank did not start"
kill -USR1 $script
set +e; wait $script; rc=$?; set -e
grep -q got-usr1 $FAKE_LOG.rank 2>/dev/null || { cat $TMP/o6; fail "LAUNCH=mpirun: SIGUSR1 to the batch shell did not reach the rank past a non-forwarding mpirun"; }
[[ $rc == 3 ]] || fail "LAUNCH=mpirun, signalled run: exit $rc, expected 3"
echo "slurm_requeue: ok"
