#!/usr/bin/env bash
# Every bad input of docs/RELIABILITY.md that reaches the binaries: the job exits non-zero
# with a message naming the file, key or tensor at fault, and leaves nothing that looks
# like a result (no report.json, no model.glvq.h5, no half-written temp file). Broken
# model directories are built here from models/tiny-llama: symlinks to its files, and a
# real (corrupted) copy of the one file a case breaks. worker_errors.sh covers the config
# keys bits / unknown key / malformed YAML, a missing model directory, more ranks than
# blocks and a NaN on a second rank; this script does not repeat them.
source "$(dirname "$0")/lib.bash"
M=$PWD/models/tiny-llama
# Quick settings: a short text, 2 calibration sequences and 1 eval chunk of 64 tokens.
head -c 40000 data/calib.txt >$TMP/calib.txt
head -c 20000 data/eval.txt >$TMP/eval.txt
q=(--config configs/tiny-llama.yaml --set quant.method=rtn --set calib.ctx=64 --set calib.samples=2 --set calib.keep_stats=true
   --set eval.ctx=64 --set eval.max_chunks=1 --set data.calib=$TMP/calib.txt --set data.eval=$TMP/eval.txt)

# fixture NAME: a model directory of symlinks to tiny-llama's files.
fixture() { mkdir -p $TMP/$1 && ln -sf $M/* $TMP/$1/ && echo $TMP/$1; }
# own DIR FILE: replaces DIR/FILE's symlink by a writable copy.
own() { cp --remove-destination $M/$2 $1/$2 && chmod u+w $1/$2; }
# st_edit FILE PYTHON: rewrites FILE's safetensors header; PYTHON edits the dict `h`.
st_edit() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
path, edit = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n]); exec(edit)
hb = json.dumps(h).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(path, "wb").write(struct.pack("<Q", len(hb)) + hb + raw[8 + n:])
PY
}
# poke FILE TENSOR BYTES: overwrites the first bytes of TENSOR's data in FILE.
poke() {
  python3 - "$@" <<'PY'
import json, struct, sys
f = open(sys.argv[1], "r+b"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
f.seek(8 + n + h[sys.argv[2]]["data_offsets"][0]); f.write(bytes.fromhex(sys.argv[3]))
PY
}
# nothing_valid DIR: no result and no temp file was left in DIR.
nothing_valid() {
  local left
  left=$(find "$1" \( -name report.json -o -name 'model.glvq.h5*' -o -name '*.tmp*' -o -name 'model.safetensors*' \
         -o -name config.json \) 2>/dev/null || true)
  [[ -z $left ]] || fail "a failed run left $left"
}
# refused CODE PATTERN CMD...: expect_exit, then nothing_valid on the output directory $od
# (not $out: expect_exit sets that to the output of the command).
refused() { expect_exit "$@"; nothing_valid "$od"; echo "ok: $2"; }
n=0
next_out() { n=$((n + 1)); od=$TMP/out$n; }

# ---- config values (exit 2 before anything starts)
next_out; refused 2 "calib.ctx: .*expected an integer" $WORKER "${q[@]}" --set calib.ctx=long --set output_dir=$od
next_out; refused 2 "calib.ctx: 8 is out of range" $WORKER "${q[@]}" --set calib.ctx=8 --set output_dir=$od
next_out; refused 2 "calib.samples: 0 is out of range" $WORKER "${q[@]}" --set calib.samples=0 --set output_dir=$od
next_out; refused 2 "eval.ctx: 1000000 is out of range" $WORKER "${q[@]}" --set eval.ctx=1000000 --set output_dir=$od
next_out; refused 2 "quant.glvq.dim.*(does not divide|multiple)" $WORKER "${q[@]}" --set quant.glvq.dim=7 --set output_dir=$od

# ---- config.json
d=$(fixture cfg-missing); own $d config.json
python3 -c "import json,sys; p=sys.argv[1]; j=json.load(open(p)); del j['hidden_size']; json.dump(j, open(p,'w'))" $d/config.json
next_out; refused 1 "$d/config.json.*hidden_size" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture cfg-arch); own $d config.json
sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/; s/"model_type": "llama"/"model_type": "gpt2"/' $d/config.json
next_out; refused 1 "$d/config.json.*(GPT2LMHeadModel|gpt2)" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture cfg-json); own $d config.json; echo '{"hidden_size": 384,' >$d/config.json
next_out; refused 1 "$d/config.json.*(JSON|json)" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od

# ---- safetensors (shard 1 holds the embedding and blocks 0-2: a 1-rank job reads it first)
s1=model-00001-of-00003.safetensors
t=model.layers.0.self_attn.q_proj.weight
d=$(fixture st-header); own $d $s1; printf 'x}garbage' | dd of=$d/$s1 bs=1 seek=8 conv=notrunc status=none
next_out; refused 1 "$d/$s1: the .*header is not valid JSON" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture st-length); own $d $s1; printf '\xff\xff\xff\xff\x00\x00\x00\x00' | dd of=$d/$s1 bs=1 conv=notrunc status=none
next_out; refused 1 "$d/$s1: header length .* runs past the end" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture st-offsets); own $d $s1
st_edit $d/$s1 "o = h['$t']['data_offsets']; h['$t']['data_offsets'] = [o[0] + 10**7, o[1] + 10**7]"
next_out; refused 1 "$d/$s1: tensor $t: data offsets .* run past the end" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture st-truncated); own $d $s1; truncate -s 5000000 $d/$s1
next_out; refused 1 "$d/$s1: tensor .*run past the end of the file.*truncated" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture st-missing); own $d $s1; own $d model.safetensors.index.json
st_edit $d/$s1 "del h['$t']"
python3 -c "import json,sys; p=sys.argv[1]; j=json.load(open(p)); del j['weight_map']['$t']; json.dump(j, open(p,'w'))" \
  $d/model.safetensors.index.json
next_out; refused 1 "$t" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture st-index); own $d $s1; st_edit $d/$s1 "del h['$t']"  # the index still lists it
next_out; refused 1 "$s1.*$t|$t.*$s1" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture st-shape); own $d $s1; st_edit $d/$s1 "h['$t']['shape'] = [192, 768]"  # same bytes, wrong shape
next_out; refused 1 "$d/$s1: tensor $t has shape \[192, 768\], expected \[384, 384\]" $WORKER "${q[@]}" \
  --set model.path=$d --set output_dir=$od
d=$(fixture st-dtype); own $d $s1; st_edit $d/$s1 "h['$t']['dtype'] = 'F8_E5M2'; h['$t']['shape'] = [384, 768]"
next_out; refused 1 "$d/$s1: tensor $t: dtype \"F8_E5M2\" is not supported" $WORKER "${q[@]}" --set model.path=$d \
  --set output_dir=$od
d=$(fixture st-int); own $d $s1; st_edit $d/$s1 "h['$t']['dtype'] = 'I16'"  # a known dtype glvq cannot use
next_out; refused 1 "$t.*I16" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
# Non-finite weights are refused, naming the tensor (a NaN on another rank: worker_errors.sh).
d=$(fixture st-inf); own $d $s1; poke $d/$s1 $t 807f  # bf16 +Inf
next_out; refused 1 "$t contains NaN or Inf" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od

# ---- tokenizer
d=$(fixture tok-missing); rm $d/tokenizer.model
next_out; refused 1 "$d/tokenizer.model" $WORKER "${q[@]}" --set model.path=$d --set output_dir=$od
d=$(fixture tok-corrupt); own $d tokenizer.model; truncate -s 30000 $d/tokenizer.model  # cut between two pieces
next_out; refused 1 "$d/tokenizer.model is not a valid sentencepiece model: .*truncated" $WORKER "${q[@]}" --set model.path=$d \
  --set output_dir=$od

# ---- calibration and evaluation text
: >$TMP/empty.txt; printf 'Too short.\n' >$TMP/short.txt
next_out; refused 1 "$TMP/empty.txt is empty" $WORKER "${q[@]}" --set data.eval=$TMP/empty.txt --set output_dir=$od
next_out; refused 1 "$TMP/short.txt: [0-9]+ tokens are fewer than one chunk of eval.ctx" $WORKER "${q[@]}" \
  --set data.eval=$TMP/short.txt --set output_dir=$od
next_out; refused 1 "$TMP/short.txt: .*fewer than calib.samples" $WORKER "${q[@]}" --set data.calib=$TMP/short.txt \
  --set output_dir=$od
next_out; refused 1 "$TMP/absent.txt" $WORKER "${q[@]}" --set data.calib=$TMP/absent.txt --set output_dir=$od
# The texts are checked by the plan stage, before any statistics or block is computed.
for i in $(seq $((n - 3)) $n); do
  [[ ! -e $TMP/out$i/stats && ! -e $TMP/out$i/blocks ]] || fail "out$i: work started before the texts were checked"
done

# ---- HDF5 files: truncated or foreign checkpoints for the tools, and for --resume
good=$TMP/good
$WORKER "${q[@]}" --set output_dir=$good >$TMP/good.log 2>&1 || { tail $TMP/good.log; fail "the reference run failed"; }
( nothing_valid $good ) 2>/dev/null && fail "nothing_valid does not see the results of a good run"
head -c 30000 $good/model.glvq.h5 >$TMP/truncated.h5
h5mkgrp $TMP/foreign.h5 /not_glvq
for f in $TMP/truncated.h5 $TMP/foreign.h5 $good/stats/block-0.h5; do
  expect_exit 1 "$f" $BUILD/glvq-inspect --no-cond $f; echo "ok: glvq-inspect refuses $f"
  od=$TMP/export-$(basename $f .h5)
  refused 1 "$f" $BUILD/glvq-export $f $od
done
# --resume: a damaged or foreign file in output_dir is not trusted; that block is made again
# and the checkpoint is the same as the undamaged run's.
r=$TMP/resumed; cp -r $good $r; rm $r/report.json
head -c 20000 $good/stats/inputs-block-0.h5 >$r/stats/inputs-block-0.h5
cp $TMP/foreign.h5 $r/blocks/block-1.h5
head -c 3000 $good/stats/block-3.h5 >$r/stats/block-3.h5; rm $r/blocks/block-3.h5
cp $TMP/foreign.h5 $r/model.glvq.h5
$WORKER "${q[@]}" --set output_dir=$r --resume >$TMP/resume.log 2>&1 || { tail $TMP/resume.log; fail "resume failed"; }
log=$r/logs/rank-0.log
grep -qE "WARN .*inputs-block-0.h5: unreadable" $log || fail "the truncated inputs-block-0.h5 was not noticed"
grep -qE "WARN .*block-1.h5 is an HDF5 file but not a glvq block file.*learning block 1 again" $log ||
  fail "the foreign block-1.h5 was not redone"
grep -qE "WARN .*stats/block-3.h5: unreadable" $log || fail "the truncated stats/block-3.h5 was not noticed"
for b in 0 2 4 5; do grep -q "block $b reused" $log || fail "block $b was not reused"; done
same_layers $good/model.glvq.h5 $r/model.glvq.h5 || fail "the resumed checkpoint differs from the undamaged run's"
echo "ok: --resume redid the damaged and foreign files; same checkpoint"
