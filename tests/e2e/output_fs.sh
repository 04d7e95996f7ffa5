#!/usr/bin/env bash
# output_dir on a read-only or full file system: a clear error naming the directory or
# file, exit 1, no temp file left, and the previous run's results untouched (byte-equal);
# once there is room again, --resume completes to the uninterrupted run's checkpoint.
# The file system is a small tmpfs in a private mount namespace (gone when the script
# ends); the disk fills up mid-job at a chosen point by the test-only hook
# GLVQ_FAULT=...,action=fill (jobs/interrupts.h), never by timing.
if [[ -z ${GLVQ_MOUNT_NS:-} ]]; then  # re-run this script inside its own mount namespace
  self=$(readlink -f "$0")
  if unshare --mount --propagation private true 2>/dev/null; then
    exec env GLVQ_MOUNT_NS=1 unshare --mount --propagation private bash "$self"
  elif unshare --user --map-root-user --mount true 2>/dev/null; then
    exec env GLVQ_MOUNT_NS=1 unshare --user --map-root-user --mount bash "$self"
  fi
  echo "FAIL: output_fs.sh needs a mount namespace (run as root, or enable unprivileged user namespaces)" >&2
  exit 1
fi
source "$(dirname "$0")/lib.bash"
FS=$TMP/fs
mkdir -p $FS
mount -t tmpfs -o size=64m glvq-test $FS
trap 'umount -l $FS 2>/dev/null; rm -rf "$TMP"' EXIT
od=$FS/out   # not $out: expect_exit sets that to the output of the command
job=($WORKER --config configs/tiny-llama.yaml --set quant.method=rtn --set quant.bits=4 --set calib.samples=4
     --set calib.micro_batch=1 --set eval.max_chunks=2 --set eval.micro_batch=1 --set output_dir=$od)

# Byte fingerprints of the previous run's results; a refusal before any work also keeps its block files.
results() { (cd $od && md5sum model.glvq.h5 report.json); }
everything() { (cd $od && md5sum model.glvq.h5 report.json plan.json blocks/*.h5 stats/*.h5); }
untouched() { [[ $(results) == "$before" ]] || fail "$1: the previous results changed"; }
no_temp_files() {
  local left; left=$(find $od -name '*.tmp-*' -o -name '.glvq-write-probe*')
  [[ -z $left ]] || fail "$1: left $left"
}
# fill_to BYTES: a filler file leaves about BYTES free on the tmpfs.
fill_to() {
  local free; free=$(df -B1 --output=avail $FS | tail -1)
  head -c $((free - $1)) /dev/zero >$FS/filler 2>/dev/null || true
}

"${job[@]}" >$TMP/ref.log 2>&1 || { tail -20 $TMP/ref.log; fail "the reference run failed"; }
cp $od/model.glvq.h5 $TMP/ref.h5
before=$(results); all_before=$(everything)
grep -q "plan: output_dir needs at least" $od/logs/rank-0.log || fail "the plan does not log the disk estimate"
# The estimate is a lower bound within 15% of what was written (overhead: scales, HDF5 metadata).
python3 - $od <<'PY'
import json, os, sys
d = sys.argv[1]; e = json.load(open(f"{d}/report.json"))["disk_estimate_bytes"]
blocks = sum(os.path.getsize(f"{d}/blocks/{f}") for f in os.listdir(f"{d}/blocks"))
for what, est, real in [("checkpoint", e["checkpoint"], os.path.getsize(f"{d}/model.glvq.h5")),
                        ("block files", e["blocks"], blocks),
                        ("activations", e["activations"], os.path.getsize(f"{d}/stats/inputs-block-0.h5"))]:
    print(f"disk estimate {what}: {est} B, written {real} B")
    if not est <= real <= 1.15 * est: sys.exit(f"FAIL: the {what} estimate {est} is not a lower bound within 15% of {real}")
PY

# ---- read-only: refused before any work, for a new run, --resume and a new directory below
mount -o remount,ro $FS
expect_exit 1 "output_dir $od is not writable: Read-only file system; point output_dir at a writable" "${job[@]}"
expect_exit 1 "output_dir $od is not writable: Read-only" "${job[@]}" --resume
expect_exit 1 "output_dir $FS/new cannot be used: .*Read-only file system" "${job[@]}" --set output_dir=$FS/new
expect_exit 1 "$FS/export.*Read-only file system" $BUILD/glvq-export $od/model.glvq.h5 $FS/export
mount -o remount,rw $FS
untouched "read-only"; [[ $(everything) == "$all_before" ]] || fail "read-only: files changed"
echo "ok: read-only output_dir refused, previous results untouched"

# ---- too little room for what the job writes: refused by the plan, before calibration
fill_to $((8 << 20))
expect_exit 1 "output_dir $od: this job writes at least .* but its file system has .* free; free space" "${job[@]}"
untouched "no room"; no_temp_files "no room"
[[ $(everything) == "$all_before" ]] || fail "no room: files changed though the job was refused before any work"
rm $FS/filler
echo "ok: a job that cannot fit is refused by its disk estimate"

# ---- the disk fills up mid-job: in learn (next block's statistics), gather (checkpoint)
# and validate (report.json). Then --resume with room again equals the reference.
for c in "learn 2 block-2|stats/block-2" "gather 3 model.glvq.h5" "validate 1 report.json"; do
  read -r stage at file <<<"$c"
  expect_exit 1 "($file).*No space left on device" \
    env GLVQ_FAULT="stage=$stage,rank=0,at=$at,action=fill,path=$FS/filler" "${job[@]}"
  grep -m1 "error:" <<<"$out" | cut -c1-220
  no_temp_files "full in $stage"
  if [[ $stage == validate ]]; then
    # The new checkpoint is complete and in place; the earlier run's report (about the replaced
    # checkpoint) was removed by gather, and the failed report write left nothing.
    [[ ! -e $od/report.json ]] || fail "full in validate: a report.json is paired with the new checkpoint"
  else
    untouched "full in $stage"
  fi
  rm $FS/filler
  "${job[@]}" --resume >$TMP/resume-$stage.log 2>&1 || { tail -20 $TMP/resume-$stage.log; fail "$stage: --resume failed"; }
  same_checkpoint $TMP/ref.h5 $od/model.glvq.h5 || fail "$stage: resumed checkpoint differs from the reference"
  before=$(results)
  echo "ok: disk full in $stage -> exit 1 naming $file, nothing half-written, --resume equals the reference"
done
echo "output_fs: ok"
