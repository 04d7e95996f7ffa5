#!/usr/bin/env bash
# Bad input fails fast with a message naming the file/key and a meaningful
# exit code, and writes no report; a failing rank takes the job down (no hang).
source "$(dirname "$0")/lib.bash"
cfg=configs/tiny-llama.yaml
expect_exit 2 "quant.bitz" $WORKER --config $cfg --set quant.bitz=2 --set output_dir=$TMP/a
expect_exit 2 "quant.bits.*range" $WORKER --config $cfg --set quant.bits=9 --set output_dir=$TMP/a
printf 'model:\n  path: [unclosed\n' >$TMP/bad.yaml
expect_exit 2 "bad.yaml:[0-9]+: malformed YAML" $WORKER --config $TMP/bad.yaml
expect_exit 2 "unknown stage|stage" $WORKER --config $cfg --stage nonsense --set output_dir=$TMP/a
expect_exit 1 "nowhere.*(does not exist|config.json)" $WORKER --config $cfg --set model.path=$TMP/nowhere --set output_dir=$TMP/a
expect_exit 2 "transport: nccl was asked for but tensors are on the CPU" "${MPIRUN[@]}" -np 2 $WORKER --config $cfg \
  --set quant.method=none --set device=cpu --set transport=nccl --set output_dir=$TMP/nccl
expect_exit 2 "ranks.*blocks|blocks.*ranks" "${MPIRUN[@]}" -np 7 $WORKER --config $cfg --set quant.method=none \
  --set output_dir=$TMP/b
[[ ! -f $TMP/a/report.json && ! -f $TMP/b/report.json ]] || fail "a failed run left a report.json"

# A NaN in a tensor owned by rank 1 of 2: that rank fails, the whole job exits
# non-zero within the timeout, with the tensor's name.
mkdir -p $TMP/nan && cp models/tiny-llama/* $TMP/nan/
python3 - $TMP/nan/model-00003-of-00003.safetensors <<'PY'
import json, struct, sys
f = open(sys.argv[1], "r+b"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
t = h["model.layers.5.mlp.down_proj.weight"]; f.seek(8 + n + t["data_offsets"][0]); f.write(b"\xc0\x7f")  # bf16 NaN
PY
expect_exit nonzero "model.layers.5.mlp.down_proj.weight.*NaN" timeout 300 "${MPIRUN[@]}" -np 2 $WORKER \
  --config $cfg --set quant.method=none --set eval.max_chunks=2 --set model.path=$TMP/nan --set output_dir=$TMP/c
[[ ! -f $TMP/c/report.json ]] || fail "the failed job left a report.json"
