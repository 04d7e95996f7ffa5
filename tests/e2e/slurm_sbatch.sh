#!/usr/bin/env bash
# slurm/quantize_tiny.sh through a real single-node Slurm: munged, slurmctld
# and slurmd are started here (no systemd), configured only under $TMP
# (SLURM_CONF, own munge key and socket, free ports: nothing in /etc, /run or
# /var is written, and a cluster already on the machine is not disturbed).
# `sbatch --wait` runs the 2-task job once launched by srun (PMIx, as the 70B
# job) and once by mpirun (the script's default); each job's report must show
# 2 ranks, finite perplexities and RTN's bits per weight, with one log per
# rank. A job whose config is bad must fail through sbatch with the worker's
# exit code. Needs root (CI runs as root) and the slurm-wlm and munge packages
# (scripts/setup.sh installs them); without them it fails, saying so.
source "$(dirname "$0")/lib.bash"

[[ $(id -u) == 0 ]] || fail "run as root: this test starts munged, slurmctld and slurmd itself"
for exe in /usr/sbin/munged /usr/sbin/mungekey /usr/sbin/slurmctld /usr/sbin/slurmd; do
  [[ -x $exe ]] || fail "$exe is missing: install the slurm-wlm and munge packages (scripts/setup.sh does)"
done
for exe in munge unmunge sbatch sinfo squeue scontrol scancel setpriv; do
  command -v $exe >/dev/null || fail "$exe is not on PATH: install the slurm-wlm and munge packages"
done
id munge >/dev/null 2>&1 || fail "there is no munge user: reinstall the munge package"

S=$TMP/slurm M=$TMP/munge
mkdir -p "$S/ctld" "$S/d" "$S/tmp" "$M"
# munged runs as the munge user; it wants its socket directory searchable by
# all and writable by nobody else.
chmod 755 "$TMP"
chown munge:munge "$M" && chmod 755 "$M"
SOCK=$M/munge.socket

pids=()
# alive PID: the process exists and is not a zombie.
alive() { [[ -e /proc/$1 ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }
# poll SECONDS CMD...: runs CMD every half second until it succeeds; fails after SECONDS.
poll() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
# started SECONDS CMD...: polls CMD until it succeeds; fails after SECONDS or as soon as a daemon died.
started() {
  local deadline=$((SECONDS + $1)) pid; shift
  until "$@" >/dev/null 2>&1; do
    for pid in "${pids[@]}"; do alive "$pid" || return 1; done
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}
logs() { tail -n 20 "$S"/*.log "$M"/*.log 2>/dev/null || true; }
dead() { ! alive "$1"; }
no_jobs() { [[ -z $(squeue -h -o %i) ]]; }
cleanup() {
  set +e
  if ((${#pids[@]} == 3)); then  # the controller is up: end the jobs before the daemons
    scancel --quiet --partition=glvq
    poll 60 no_jobs || echo "slurm_sbatch: jobs still queued or running at exit" >&2
  fi
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null
    poll 30 dead "$pid" || { echo "slurm_sbatch: daemon $pid ignored SIGTERM; killing it" >&2; kill -KILL "$pid"; }
    wait "$pid" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

# munge: a key of our own, munged in the foreground (its pid is $!).
setpriv --reuid=munge --regid=munge --init-groups mungekey --create --keyfile="$M/munge.key"
setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground --socket="$SOCK" \
  --key-file="$M/munge.key" --pid-file="$M/munged.pid" --seed-file="$M/munged.seed" \
  --log-file="$M/munged.log" >/dev/null 2>&1 &
pids+=($!)
munge_ok() { munge -S "$SOCK" -n | unmunge -S "$SOCK" | grep -q 'STATUS: *Success'; }
started 30 munge_ok || { logs; fail "munge -n | unmunge failed against $SOCK: munged did not start (log above)"; }

host=$(hostname -s)
cpus=$(nproc); ((cpus >= 2)) || cpus=2  # 2 tasks need 2 CPUs; config_overrides lets a 1-CPU box claim 2
read -r ctld_port d_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("", 0))
print(*(x.getsockname()[1] for x in s))')
export SLURM_CONF=$S/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=glvq-e2e
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCK
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
StateSaveLocation=$S/ctld
SlurmdSpoolDir=$S/d
TmpFS=$S/tmp
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=glvq Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
# In the foreground (-D) their pids are $!; they log to their files ($S/*.log).
/usr/sbin/slurmctld -D -f "$SLURM_CONF" >/dev/null 2>&1 &
pids+=($!)
/usr/sbin/slurmd -D -f "$SLURM_CONF" -N "$host" >/dev/null 2>&1 &
pids+=($!)
node_idle() { [[ $(sinfo -h -n "$host" -o %T) == idle ]]; }
started 60 node_idle || { sinfo; logs; fail "node $host did not become idle within 60 s (logs above)"; }

# submit LAUNCH OUT EXTRA: the job as the script's #SBATCH lines ask (2 tasks), through
# sbatch --wait; returns sbatch's exit code, the job's (124 after 300 s).
submit() {
  LAUNCH=$1 OUT=$2 EXTRA=$3 timeout 300 sbatch --wait --quiet --output="$2.slurm.out" \
    slurm/quantize_tiny.sh
}
quick="--set quant.method=rtn --set quant.bits=4 --set calib.samples=4 --set eval.max_chunks=2"

for launch in srun mpirun; do
  out=$TMP/job-$launch
  set +e; submit $launch "$out" "$quick"; rc=$?; set -e
  ((rc == 0)) || { cat "$out.slurm.out"; logs; fail "the $launch job failed through sbatch (exit $rc)"; }
  r=$out/report.json
  [[ -f $r ]] || { cat "$out.slurm.out"; fail "$launch: the job wrote no report.json"; }
  [[ $(json "$r" 'j["ranks"]') == 2 ]] || fail "$launch: report.json says $(json "$r" 'j["ranks"]') ranks, expected 2"
  [[ $(json "$r" 'sorted(p["rank"] for p in j["per_rank"])') == "[0, 1]" ]] || fail "$launch: per_rank is not ranks 0 and 1"
  [[ $(json "$r" 'j["eval_chunks"]') == 2 ]] || fail "$launch: eval_chunks is not 2"
  for k in ppl_fp ppl_quant; do
    json "$r" "__import__('math').isfinite(j['$k']) and j['$k'] > 1" | grep -qx True || fail "$launch: $k is not a finite perplexity"
  done
  # 4-bit RTN at group 128 stays close to full precision; a checkpoint read back wrong does not.
  close "$(json "$r" 'j["ppl_quant"]')" "$(json "$r" 'j["ppl_fp"]')" 0.1 || fail "$launch: 4-bit RTN perplexity is far from fp"
  # RTN stores b-bit codes plus an fp16 scale and an fp16 zero per group of 128: b + 32/128.
  [[ $(json "$r" 'j["code_bits_per_weight"]') == 4.0 ]] || fail "$launch: code bits per weight is not 4"
  close "$(json "$r" 'j["bits_per_weight"]')" 4.25 1e-12 || fail "$launch: bits per weight is not 4.25"
  for rank in 0 1; do
    grep -q "rank $rank/2" "$out/logs/rank-$rank.log" || fail "$launch: logs/rank-$rank.log is missing or not rank $rank of 2"
  done
  echo "slurm_sbatch: $launch job ok (ppl fp $(json "$r" 'j["ppl_fp"]'), rtn-w4 $(json "$r" 'j["ppl_quant"]'))"
done

# A bad config fails the job and sbatch passes the worker's exit code (2) on.
set +e; submit srun "$TMP/job-bad" "--set quant.bits=99"; rc=$?; set -e
[[ $rc == 2 ]] || { cat "$TMP/job-bad.slurm.out"; fail "a job with a bad config ended with exit $rc through sbatch, expected 2"; }
grep -q "quant.bits" "$TMP/job-bad.slurm.out" || fail "the failed job's output does not name quant.bits"
[[ ! -e $TMP/job-bad/report.json ]] || fail "the failed job wrote a report.json"
