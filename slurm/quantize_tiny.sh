#!/usr/bin/env bash
# The embedded tiny-llama through Slurm exactly like the 70B job (CPU ranks).
#   sbatch --wait slurm/quantize_tiny.sh
#   OUT=/tmp/x EXTRA="--set quant.method=rtn" sbatch --ntasks=2 slurm/quantize_tiny.sh
#SBATCH --job-name=glvq-tiny
#SBATCH --ntasks=2
#SBATCH --cpus-per-task=1
#SBATCH --time=01:00:00
#SBATCH --output=slurm-%x-%j.out
set -uo pipefail
GLVQ_HOME=${GLVQ_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
OUT=${OUT:-$GLVQ_HOME/runs/tiny-llama-slurm}
LAUNCH=${LAUNCH:-mpirun}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# glvq-worker is an MPI program: srun must wire its ranks up through PMIx (under a
# cluster default of MpiDefault=none, MPI_Init fails in every task).
export SLURM_MPI_TYPE=${SLURM_MPI_TYPE:-pmix}
cd "$GLVQ_HOME"
# shellcheck disable=SC2086
args=(--config configs/tiny-llama.yaml --set "output_dir=$OUT" ${EXTRA:-})
mkdir -p "$OUT" && started=$(mktemp "$OUT/.launch.XXXXXX") || exit 1
# Dated a second back: file times come from a coarse kernel clock, and a report written
# within the same tick as the marker would not be newer than it.
touch -d "@$(($(date +%s) - 1))" "$started"
if [[ $LAUNCH == srun ]]; then
  srun --kill-on-bad-exit=1 "${GLVQ_BUILD_DIR:-build}/glvq-worker" "${args[@]}"
else
  mpirun --allow-run-as-root --oversubscribe -np "${SLURM_NTASKS:-2}" "${GLVQ_BUILD_DIR:-build}/glvq-worker" "${args[@]}"
fi
rc=$?
# srun (Slurm 22.05) exits 0 when its tasks failed to launch (a PMIx error, say), so a
# zero exit counts only with a report.json written by this run.
if [[ $rc -eq 0 && ! $OUT/report.json -nt $started ]]; then
  echo "glvq: $LAUNCH exited 0 but the job wrote no $OUT/report.json: its tasks did not run (see the launcher's errors above and slurmd's log)" >&2
  rc=1
fi
rm -f "$started"
exit $rc
