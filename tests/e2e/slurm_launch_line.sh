#!/usr/bin/env bash
# slurm/quantize_tiny.sh's launch line (mpirun, 2 ranks) run directly, as a
# Slurm job would run it; the job's report must come out complete.
# (A real slurmctld/slurmd in CI is not set up yet: see README.)
source "$(dirname "$0")/lib.bash"
OUT=$TMP/slurm EXTRA="--set quant.method=none --set eval.max_chunks=2" SLURM_NTASKS=2 bash slurm/quantize_tiny.sh
r=$TMP/slurm/report.json
[[ $(json $r 'j["ranks"]') == 2 ]] || fail "the job did not run 2 ranks"
[[ $(json $r 'j["eval_chunks"]') == 2 ]] || fail "unexpected chunk count"
