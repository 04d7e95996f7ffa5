#!/usr/bin/env bash
# The report pages: two small RTN runs of tiny-llama (4 and 3 bits, side by side,
# one thread each) give report.html, glvq-inspect --html/--csv and glvq-compare
# their inputs. Checked: report.html is well-formed (xmllint's XML parser, and
# Python's HTML parser for the numbers), every number it tags with data-key equals
# report.json's value exactly, the heatmap and bit map have a cell per layer, the
# CSV's rows match report.json and inspect --json, the comparison's points are the
# runs' (bits_per_weight, ppl_quant); headless Chromium renders report.html to a
# non-blank PNG. Bad inputs (a run directory without report.json, a truncated
# checkpoint, a report.json of another run) fail naming the file and leave no output; a
# report.html the worker cannot write is a warning, not a failed job.
source "$(dirname "$0")/lib.bash"
for tool in xmllint chromium; do
  command -v $tool >/dev/null || fail "$tool is missing: scripts/setup.sh installs it (libxml2-utils, chromium)"
done
INSPECT=$BUILD/glvq-inspect
COMPARE=$BUILD/glvq-compare
SIZE=(--config configs/tiny-llama.yaml --set quant.method=rtn --set calib.samples=2 --set calib.ctx=256
      --set eval.ctx=256 --set eval.max_chunks=2 --set device=cpu --set threads=1)
A=$TMP/rtn4 B=$TMP/rtn3
$WORKER "${SIZE[@]}" --set quant.bits=4 --set output_dir=$A >$TMP/a.log 2>&1 & pa=$!
$WORKER "${SIZE[@]}" --set quant.bits=3 --set output_dir=$B >$TMP/b.log 2>&1 & pb=$!
wait $pa || { tail -20 $TMP/a.log; fail "the 4-bit run failed"; }
wait $pb || { tail -20 $TMP/b.log; fail "the 3-bit run failed"; }
grep -q "report: $A/report.html" $TMP/a.log || fail "the worker did not log report.html"

# check_page HTML REPORT_JSON MIN_KEYS: well-formed, and every data-key number equals report.json's.
check_page() {
  xmllint --noout "$1" || fail "$1 is not well-formed"
  python3 - "$@" <<'PY' || fail "$1: numbers differ from $2"
import json, math, sys
from html.parser import HTMLParser
page, report, min_keys = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
losses = {}
for r in report.get("per_rank", []):
    losses.update(r.get("layer_losses", {}))
class P(HTMLParser):
    def __init__(s):
        super().__init__(); s.keys = []; s.stack = []; s.cells = {}
    def handle_starttag(s, tag, attrs):
        a = dict(attrs)
        if "data-key" in a: s.keys.append((a["data-key"], a["data-v"]))
        c = a.get("class", "")
        if tag == "rect" and c: s.cells.setdefault(c, []).append(a.get("data-v"))
p = P(); p.feed(open(page, encoding="utf-8").read()); p.close()
def lookup(key):
    if key.startswith("layer_losses."):
        name, field = key[len("layer_losses."):].rsplit(".", 1)
        return losses[name][field]
    v = report
    for part in key.split("."): v = v[part]
    return v
bad = [(k, v, lookup(k)) for k, v in p.keys if float(v) != float(lookup(k))]
print(f"{page}: {len(p.keys)} numbers compared with report.json, {len(bad)} differ", *bad[:5])
assert len(p.keys) >= min_keys, f"only {len(p.keys)} tagged numbers"
if losses:  # a cell per layer in the heatmap (valued as report.json's rel_loss) and in the bit map
    heat = p.cells.get("heat-cell", [])
    assert len(heat) == len(losses), (len(heat), len(losses))
    assert sorted(map(float, heat)) == sorted(l["rel_loss"] for l in losses.values())
    at_n = p.cells.get("bits-at", [])
    assert len(at_n) == len(losses) and all(float(x) == 1.0 for x in at_n), "RTN: every group at N"
sys.exit(1 if bad else 0)
PY
}

# 1. The worker's report.html.
[[ -s $A/report.html ]] || fail "$A/report.html is missing"
check_page $A/report.html $A/report.json 50
# 2. glvq-inspect --html (report.json found beside the checkpoint) and --csv.
$INSPECT $A/model.glvq.h5 --html $TMP/inspect.html --csv $TMP/layers.csv 2>$TMP/inspect.err ||
  { cat $TMP/inspect.err; fail "glvq-inspect --html --csv failed"; }
check_page $TMP/inspect.html $A/report.json 50
$INSPECT $A/model.glvq.h5 --json --no-cond >$TMP/inspect.json
$INSPECT $A/model.glvq.h5 --csv >$TMP/stdout.csv
cmp -s $TMP/layers.csv $TMP/stdout.csv || fail "--csv FILE and --csv (stdout) differ"
python3 - $TMP/layers.csv $A/report.json $TMP/inspect.json <<'PY' || fail "the CSV does not match report.json / inspect"
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rep, ins = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
losses = {k: v for r in rep["per_rank"] for k, v in r["layer_losses"].items()}
layers = {l["name"]: l for l in ins["layers"]}
assert len(rows) == len(losses) == len(layers) == 42, (len(rows), len(losses), len(layers))
for r in rows:
    n = r["name"]
    assert float(r["rel_loss"]) == losses[n]["rel_loss"], n
    assert float(r["loss"]) == losses[n]["loss"] == layers[n]["loss"], n
    assert float(r["bits_per_weight"]) == layers[n]["bits"]["total"], n
    assert [int(r["out"]), int(r["in"])] == layers[n]["shape"], n
    assert int(r["groups_n"]) == int(r["groups"]) > 0 and int(r["groups_n_minus_1"]) == 0, n
print(f"layers.csv: {len(rows)} rows equal report.json and glvq-inspect --json")
PY
# 3. glvq-compare: table and chart of both runs.
$COMPARE $A $B --html $TMP/compare.html --svg $TMP/compare.svg >$TMP/compare.md || fail "glvq-compare failed"
cat $TMP/compare.md
[[ $(grep -c '^| rtn[34] ' $TMP/compare.md) == 2 ]] || fail "the table lacks a row per run"
xmllint --noout $TMP/compare.html $TMP/compare.svg || fail "the comparison's files are not well-formed"
python3 - $TMP/compare.svg $A/report.json $B/report.json <<'PY' || fail "the chart's points are not the runs'"
import json, re, sys
svg = open(sys.argv[1]).read()
pts = sorted((float(x), float(y)) for x, y in re.findall(r'data-x="([^"]+)" data-y="([^"]+)"', svg))
want = sorted((j["bits_per_weight"], j["ppl_quant"]) for j in map(lambda p: json.load(open(p)), sys.argv[2:]))
assert pts == want, (pts, want)
assert svg.count('class="fp-label"') == 1, "one FP line (both runs share the evaluation)"
print("compare.svg: points", pts)
PY
# 4. Headless Chromium renders report.html to a PNG that is not blank.
png=$TMP/report.png
timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,1800 \
  --screenshot=$png "file://$A/report.html" >$TMP/chromium.log 2>&1 || { tail $TMP/chromium.log; fail "chromium failed"; }
python3 - $png <<'PY' || fail "the screenshot is not a rendered page"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w, h = 8, b"", 0, 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"IHDR": w, h = struct.unpack(">II", data[pos + 8:pos + 16])
    if kind == b"IDAT": idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
raw = zlib.decompress(idat)
# Distinct byte values: a blank page has a handful; text, heatmap and bit map give many.
distinct = len(set(raw))
print(f"report.png: {w}x{h}, {distinct} distinct byte values")
assert w == 1200 and h == 1800 and distinct > 64
PY
# 5. Bad input: a clear message naming the file, a non-zero exit, no output left.
mkdir -p $TMP/notarun
expect_exit 1 "$TMP/notarun/report.json does not exist" $COMPARE $A $TMP/notarun --html $TMP/bad.html
head -c 200000 $A/model.glvq.h5 >$TMP/cut.glvq.h5
expect_exit 1 "$TMP/cut.glvq.h5" $INSPECT $TMP/cut.glvq.h5 --html $TMP/bad.html --csv $TMP/bad.csv
expect_exit 1 "$B/report.json does not describe $A/model.glvq.h5" \
  $INSPECT $A/model.glvq.h5 --report $B/report.json --html $TMP/bad.html
expect_exit 1 "cannot|No such file|$TMP/nodir" $INSPECT $A/model.glvq.h5 --html $TMP/nodir/x.html
left=$(ls $TMP | grep -E '^bad\.|\.tmp' || true)
[[ -z $left ]] || fail "failed commands left files behind: $left"
# 6. The worker cannot write report.html (a directory is in its way): a warning naming it and the
#    command that writes it later, exit 0 (report.json is complete), no temporary file left.
rm -rf $A/report.html && mkdir -p $A/report.html/in-the-way
$WORKER "${SIZE[@]}" --set quant.bits=4 --set output_dir=$A --stage validate >$TMP/v.log 2>&1 ||
  { tail -20 $TMP/v.log; fail "validate failed although only report.html could not be written"; }
grep -q "report.html was not written .*$A/report.html.*glvq-inspect $A/model.glvq.h5 --html" $TMP/v.log ||
  { tail -5 $TMP/v.log; fail "no warning about report.html"; }
[[ -s $A/report.json && -d $A/report.html ]] || fail "report.json missing or report.html replaced"
left=$(find $A -maxdepth 1 -name '*.tmp-*')
[[ -z $left ]] || fail "the failed report.html write left $left"
echo "report_html: OK"
