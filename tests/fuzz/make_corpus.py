#!/usr/bin/env python3
"""Writes the fuzzers' seed corpus (tests/fuzz/corpus/<target>/): small valid inputs and
near-valid ones that fail one check each, so that mutation starts next to every branch.
Run from anywhere; rewrites the seed files it owns (names seed-*), leaves others alone."""
import json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.normpath(os.path.join(here, "..", ".."))


def out(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- safetensors
def st(header, data=b"", pad=True):
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


two = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
       "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]},
       "__metadata__": {"format": "pt"}}
out("safetensors", "valid-two", st(two, bytes(range(32))))
out("safetensors", "valid-empty-and-scalar", st({
    "e": {"dtype": "F16", "shape": [0, 5], "data_offsets": [0, 0]},
    "s": {"dtype": "I64", "shape": [], "data_offsets": [0, 8]},
    "u": {"dtype": "U8", "shape": [3], "data_offsets": [8, 11]},
    "f": {"dtype": "F64", "shape": [1], "data_offsets": [11, 19]}}, bytes(19)))
out("safetensors", "valid-no-tensors", st({}))
out("safetensors", "truncated-data", st(two, bytes(20)))
out("safetensors", "length-past-end", struct.pack("<Q", 1000) + b"{}")
out("safetensors", "header-not-json", st({"a": 1})[:-3] + b"  ")
out("safetensors", "overlap", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
out("safetensors", "unknown-dtype", st({"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, bytes(2)))
out("safetensors", "shape-mismatch", st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)))
out("safetensors", "negative-shape", st({"a": {"dtype": "I8", "shape": [-1], "data_offsets": [0, 1]}}, bytes(1)))
out("safetensors", "huge-shape", st({"a": {"dtype": "F32", "shape": [2**62, 8], "data_offsets": [0, 0]}}))
out("safetensors", "short", b"\x02\x00\x00")
# A real shard's header (names and shapes of tiny-llama) without its data.
with open(os.path.join(root, "models/tiny-llama/model-00003-of-00003.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    out("safetensors", "tiny-llama-header-only", struct.pack("<Q", n) + f.read(n))

# ---- config (YAML; NUL-separated pieces after the first are --set overrides)
with open(os.path.join(root, "configs/tiny-llama.yaml")) as f:
    out("config", "tiny-llama", f.read())
minimal = "model: {path: m}\ndata: {eval: e.txt}\noutput_dir: o\n"
out("config", "minimal", minimal)
out("config", "minimal-overrides", minimal + "\0quant.method=rtn\0data.calib=c.txt\0quant.rtn={group_size: 64}")
out("config", "flow", "{model: {path: m}, data: {eval: e, calib: c}, output_dir: o, quant: {method: glvq, "
                      "bits: 3, glvq: {dim: 16, group_size: 0}}, calib: {ctx: 16, samples: 1}}\n")
out("config", "anchors", "model: &m {path: m}\ndata: {eval: e}\noutput_dir: *m\n")
out("config", "unknown-key", minimal + "quant:\n  bitz: 2\n")
out("config", "wrong-type", minimal + "calib:\n  ctx: [1, 2]\n")
out("config", "out-of-range", minimal + "quant: {bits: 9.5}\neval: {ctx: 8}\n")
out("config", "duplicate", minimal + "seed: 1\nseed: 2\n")
out("config", "malformed", "model:\n  path: [unclosed\n")
out("config", "two-documents", minimal + "---\nseed: 1\n")
out("config", "bad-override", minimal + "\0quant.bits\0=3\0quant.glvq.dim=7")
out("config", "cross-keys", minimal + "quant: {method: glvq, glvq: {dim: 6, sigma_min: 2, sigma_max: 1}}\n")


# ---- tokenizer.model (protobuf ModelProto; field numbers of sentencepiece_model.proto)
def varint(v):
    b = b""
    while v >= 0x80:
        b += bytes([(v & 0x7F) | 0x80]); v >>= 7
    return b + bytes([v])


def key(field, wire): return varint(field << 3 | wire)
def pv(field, v): return key(field, 0) + varint(v)
def ps(field, s): s = s.encode() if isinstance(s, str) else s; return key(field, 2) + varint(len(s)) + s
def pf(field, x): return key(field, 5) + struct.pack("<f", x)


def model(pieces, byte_fallback=False, model_type=2, normalizer="identity"):
    m = b""
    for p, score, t in pieces:
        m += ps(1, ps(1, p) + pf(2, score) + pv(3, t))
    m += ps(2, pv(3, model_type) + pv(35, int(byte_fallback)) + pv(40, 0) + pv(41, 1) + pv(42, 2))
    m += ps(3, ps(1, normalizer) + pv(3, 1) + pv(4, 0) + pv(5, 1))
    return m


ws = "\u2581"
base = [("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3), ("<x>", 0, 4)]
normal = [(c, -10, 1) for c in ["a", "b", "c", ws, "\u00e9"]] + [("ab", -1, 1), (ws + "a", -1.5, 1), ("abc", -0.5, 5)]
out("tokenizer", "bpe", model(base + normal))
out("tokenizer", "bpe-bytes", model(base + [("<0x%02X>" % b, 0, 6) for b in range(256)] + normal, byte_fallback=True))
out("tokenizer", "unigram", model(base + normal, model_type=1))
out("tokenizer", "no-unk", model(base[1:] + normal))
out("tokenizer", "duplicate-piece", model(base + normal + [("a", -3, 1)]))
out("tokenizer", "charsmap", model(base + normal, normalizer="nmt_nfkc"))
out("tokenizer", "truncated", model(base + normal)[:-7])

# ---- text for the shipped tokenizer
for name, text in [("english", "The quick brown fox jumps over the lazy dog.\n\nA second paragraph."),
                   ("spaces", "  two  spaces\tand\ttabs \n"), ("utf8", "h\u00e9llo w\u00f6rld \u65e5\u672c \U0001F600"),
                   ("bad-utf8", b"bad \xff\xfe \xc3 \xed\xa0\x80 \xc0\x80"), ("specials", "<s> </s> <unk> <0x41>")]:
    out("tokenize", name, text)
print("seeds written under", os.path.join(here, "corpus"))
