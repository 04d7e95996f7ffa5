# Shared helpers for the end-to-end scripts (sourced, not run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BUILD=${GLVQ_BUILD_DIR:-build}
WORKER=$BUILD/glvq-worker
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
export OMPI_MCA_rmaps_base_oversubscribe=1
# On GPU machines NVLink multicast stays off (the workplace rule; harmless elsewhere).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
TMP=$(mktemp -d /tmp/glvq-e2e.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
# json FILE EXPR: prints a value from a JSON file (EXPR in Python syntax on `j`).
json() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
# close A B TOL: |A-B|/|B| <= TOL
close() { python3 -c "import sys; a,b,t=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b)<=t*abs(b) else 1)" "$1" "$2" "$3"; }
# expect_exit CODE|nonzero PATTERN CMD...: runs CMD, checks its exit code and that its output matches PATTERN.
expect_exit() {
  local code=$1 pattern=$2; shift 2
  set +e; out=$("$@" 2>&1); rc=$?; set -e
  if [[ $code == nonzero ]]; then ok=$((rc != 0)); else ok=$((rc == code)); fi
  [[ $ok == 1 ]] || { echo "$out" | tail -20; fail "exit $rc, expected $code: $*"; }
  grep -qE -- "$pattern" <<<"$out" || { echo "$out" | tail -20; fail "output lacks /$pattern/: $*"; }
}

# wait_line PATTERN FILE PID: until FILE has a line matching PATTERN (60 s at most; fails
# when process PID ends first).
wait_line() {
  local t=0
  until grep -qE -- "$1" "$2" 2>/dev/null; do
    sleep 0.05; t=$((t + 1)); ((t < 1200)) || fail "no /$1/ in $2 after 60s"
    kill -0 "$3" 2>/dev/null || fail "the job ended before /$1/ (see $2)"
  done
}

# same_checkpoint A B: every dataset and attribute under /layers and /tensors of two
# model.glvq.h5 files is equal; only the recorded wall time of layers ("seconds") may differ.
# GLVQ_E2E_COMPARE=export (for machines without hdf5-tools, e.g. the GPU machine) compares
# instead the weights glvq-export decodes from each, byte for byte: weaker (losses and
# attributes are not compared), so only when asked for.
same_checkpoint() {
  [[ ${GLVQ_E2E_COMPARE:-} != export ]] || { same_exported_weights "$@"; return; }
  command -v h5diff >/dev/null || fail "h5diff is missing: install hdf5-tools (scripts/setup.sh does), or set GLVQ_E2E_COMPARE=export"
  local a=$1 b=$2 d=$TMP/h5diff.$RANDOM.txt
  { h5diff -r "$a" "$b" /layers /layers; h5diff -r "$a" "$b" /tensors /tensors; } >$d 2>&1 || true
  python3 - "$d" <<'PY'
import re, sys
header, compared, bad = None, 0, []
for line in open(sys.argv[1]):
    if re.match(r"^(dataset|attribute|group)\s*: ", line):
        header = line.strip()
    m = re.match(r"^(\d+) differences? found", line)
    if m and header:
        compared += 1
        if int(m.group(1)) > 0 and not header.startswith("attribute: <seconds of"):
            bad.append(header)
    if "not comparable" in line or "do not exist" in line or "cannot" in line.lower():
        bad.append(line.strip())
print(f"h5diff: {compared} objects compared, {len(bad)} differ beyond wall time", *bad[:5], sep="\n  ")
sys.exit(1 if bad or compared == 0 else 0)
PY
}

same_exported_weights() {
  local a=$1 b=$2 e=$TMP/export.$RANDOM f
  echo "GLVQ_E2E_COMPARE=export: comparing the weights exported from each checkpoint"
  $BUILD/glvq-export "$a" $e/a >/dev/null && $BUILD/glvq-export "$b" $e/b >/dev/null || return 1
  for f in $e/a/*.safetensors; do cmp -s "$f" "$e/b/${f##*/}" || { echo "  ${f##*/} differs"; return 1; }; done
  rm -rf $e
}

# same_layers: the older name of same_checkpoint.
same_layers() { same_checkpoint "$@"; }
