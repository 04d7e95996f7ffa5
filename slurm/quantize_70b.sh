#!/usr/bin/env bash
# Llama-2-70B at 2 bits: one rank per GPU, blocks sharded across ranks.
#   sbatch slurm/quantize_70b.sh                       (defaults below)
#   MODEL=/data/Llama-2-70b-hf OUT=runs/70b sbatch --nodes=2 slurm/quantize_70b.sh
# Preemption: glvq-worker answers SIGTERM and SIGUSR1 alike. Every rank stops at
# its next preemption check (learning steps, encodes, micro-batches, gather's
# layers: well under a second apart), abandons the unfinished block (finished
# blocks are durable files), and the job exits with code 3; the script then
# requeues it and the requeued job resumes from the finished blocks. A rank
# blocked waiting for another exits 3 at once, and one inside a single long
# library call (a 70B Cholesky on a CPU) after preempt_grace_s (10 s) at the
# latest. docs/RELIABILITY.md has the measured times. What it expects of Slurm:
#  --signal=B:USR1@120  120 s before the time limit Slurm signals this batch shell
#      (B: only the shell), whose trap forwards USR1 to the launcher: srun passes
#      it to every task. mpirun is sent USR1 too (a SIGTERM would make it kill the
#      ranks, exit 3 lost), and so are the ranks it started on this node: Open MPI
#      4.1.4 (Debian) forwards SIGUSR1 to its ranks, 4.1.6 (Ubuntu 24.04) was seen
#      not to. With LAUNCH=mpirun over several nodes, the other nodes' ranks then
#      learn of it from their neighbours' exit (or use srun). 120 s is far above
#      the worker's bound; it leaves room for a block file being written.
#  scancel and preemption (PreemptMode=REQUEUE or CANCEL) send SIGTERM to every
#      task and to this shell (forwarded as USR1), then SIGKILL after KillWait
#      (30 s by default) or the partition's GraceTime: both must exceed
#      preempt_grace_s plus a few seconds of exit, so keep them >= 15 s (a
#      GraceTime of 0 means SIGKILL at once: no exit 3, no requeue by this script).
#  --requeue  lets `scontrol requeue` (below) put the job back in the queue.
#SBATCH --job-name=glvq-70b
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --output=slurm-%x-%j.out
set -uo pipefail

GLVQ_HOME=${GLVQ_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
CONFIG=${CONFIG:-$GLVQ_HOME/configs/llama2-70b-2bit.yaml}
MODEL=${MODEL:-}
OUT=${OUT:-$GLVQ_HOME/runs/llama2-70b-2bit}
LAUNCH=${LAUNCH:-srun}          # srun | mpirun

# NVLink multicast stays off on shared hosts (it can take GPUs out of service).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-8}
# glvq-worker is an MPI program: srun must wire its ranks up through PMIx (under a
# cluster default of MpiDefault=none, MPI_Init fails in every task).
export SLURM_MPI_TYPE=${SLURM_MPI_TYPE:-pmix}

args=(--config "$CONFIG" --set "output_dir=$OUT")
[[ -n $MODEL ]] && args+=(--set "model.path=$MODEL")
# A requeued job (or any rerun into an existing output_dir) resumes.
[[ -f $OUT/plan.json ]] && args+=(--resume)

# Forward the preemption signal to the ranks. The trap is set before the launch so
# that no signal finds the shell undefended; one that comes before $pid is known is
# forwarded right after.
mkdir -p "$OUT" && started=$(mktemp "$OUT/.launch.XXXXXX") || exit 1
# Dated a second back: file times come from a coarse kernel clock, and a report written
# within the same tick as the marker would not be newer than it.
touch -d "@$(($(date +%s) - 1))" "$started"
pid=
forwarded=0
forward() {
  kill -USR1 $pid 2>/dev/null
  [[ $LAUNCH == mpirun ]] && pkill -USR1 -P $pid -x glvq-worker
  return 0
}
trap 'forwarded=1; [[ -n $pid ]] && forward' USR1 TERM
if [[ $LAUNCH == srun ]]; then
  srun --kill-on-bad-exit=1 "$GLVQ_HOME/${GLVQ_BUILD_DIR:-build}/glvq-worker" "${args[@]}" &
else
  mpirun --bind-to none "$GLVQ_HOME/${GLVQ_BUILD_DIR:-build}/glvq-worker" "${args[@]}" &
fi
pid=$!
[[ $forwarded == 1 ]] && forward
# A trapped signal interrupts `wait` (status 128 + n) whether or not the launcher has
# exited; wait again until a wait returns the launcher's own status (bash keeps it).
while :; do
  forwarded=0
  wait $pid; rc=$?
  [[ $forwarded == 1 ]] || break
done

# srun (Slurm 22.05) exits 0 when its tasks failed to launch (a PMIx error, say), so a
# zero exit counts only with a report.json written by this run.
if [[ $rc -eq 0 && ! $OUT/report.json -nt $started ]]; then
  echo "glvq: $LAUNCH exited 0 but the job wrote no $OUT/report.json: its tasks did not run (see the launcher's errors above and slurmd's log)" >&2
  rc=1
fi
rm -f "$started"
if [[ $rc -eq 3 && -n ${SLURM_JOB_ID:-} ]]; then
  echo "glvq: preempted; requeueing job $SLURM_JOB_ID to resume"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit $rc
