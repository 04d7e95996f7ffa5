// Block files (blocks/block-<k>.h5): exact round trips of every dtype, and
// every way a file can be unusable on resume: truncated, corrupt, foreign,
// incomplete, or made under other settings (the differing key named).
#include "ckpt/block_file.h"
#include "ckpt/checksum.h"
#include "ckpt/h5_util.h"
#include "ckpt/layer_io.h"
#include "common/fs_util.h"
#include "quant/quantizer.h"

#include "base/test_util.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <set>
#include <thread>
#include <tuple>

namespace glvq {
namespace {

using json = nlohmann::json;
using test::expect_error;
using test::TempDir;

constexpr uint64_t kSeed = 20240611;

at::Generator seeded(uint64_t seed) {
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

/// Random bytes as a tensor of DTYPE: every bit pattern (NaN payloads, -0, Inf) may occur.
at::Tensor random_bits(at::ScalarType dtype, at::IntArrayRef shape, at::Generator& gen) {
  const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  at::Tensor bytes = at::randint(0, 256, {n * elem}, gen, at::TensorOptions().dtype(at::kByte));
  if (dtype == at::kBool) return (bytes.remainder(2) == 1).reshape(shape);
  return bytes.view(dtype).reshape(shape).clone();
}

/// Bitwise equality: dtype, shape and bytes.
void expect_same_tensor(const at::Tensor& a, const at::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.scalar_type(), b.scalar_type()) << what;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  if (ca.numel() == 0) return;  // empty tensors may have no storage pointer
  EXPECT_EQ(0, std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * ca.element_size())) << what;
}

void expect_same_layer(const QuantizedLinear& a, const QuantizedLinear& b, const std::string& what) {
  EXPECT_EQ(a.method, b.method) << what;
  EXPECT_EQ(a.out, b.out) << what;
  EXPECT_EQ(a.in, b.in) << what;
  EXPECT_EQ(a.loss, b.loss) << what;
  EXPECT_EQ(a.loss_init, b.loss_init) << what;
  EXPECT_EQ(a.seconds, b.seconds) << what;
  EXPECT_EQ(a.attrs, b.attrs) << what;
  ASSERT_EQ(a.arrays.size(), b.arrays.size()) << what;
  for (const auto& [name, t] : a.arrays) {
    ASSERT_TRUE(b.arrays.count(name)) << what << " lacks " << name;
    expect_same_tensor(t, b.arrays.at(name), what + "/" + name);
  }
}

/// A layer with one array of every storable dtype, a 0-d and an empty array.
QuantizedLinear every_dtype_layer(at::Generator& gen) {
  QuantizedLinear q;
  q.method = "glvq";
  q.out = 24;
  q.in = 32;
  q.arrays["codes"] = random_bits(at::kByte, {101}, gen);
  q.arrays["G"] = random_bits(at::kHalf, {48, 4, 4}, gen);  // compressed (>= 1 KiB)
  q.arrays["mu"] = random_bits(at::kHalf, {48}, gen);
  q.arrays["scale"] = random_bits(at::kHalf, {48}, gen);
  q.arrays["bits"] = at::randint(1, 9, {48}, gen, at::TensorOptions().dtype(at::kByte));
  q.arrays["signs_in"] = random_bits(at::kByte, {4}, gen);
  q.arrays["x_i8"] = random_bits(at::kChar, {3, 5}, gen);
  q.arrays["x_i16"] = random_bits(at::kShort, {7}, gen);
  q.arrays["x_i32"] = random_bits(at::kInt, {2, 3, 4}, gen);
  q.arrays["x_i64"] = random_bits(at::kLong, {300}, gen);  // compressed integers
  q.arrays["x_f32"] = random_bits(at::kFloat, {9, 2}, gen);
  q.arrays["x_f64"] = random_bits(at::kDouble, {5}, gen);
  q.arrays["x_bf16"] = random_bits(at::kBFloat16, {6, 11}, gen);
  q.arrays["x_bool"] = random_bits(at::kBool, {13}, gen);
  q.arrays["x_scalar"] = random_bits(at::kFloat, {}, gen);
  q.arrays["x_empty"] = at::empty({0, 3}, at::TensorOptions().dtype(at::kHalf));
  q.attrs = {{"dim", 4}, {"group_size", 16}, {"incoherence", 0}, {"seed", 12345678901234.0}, {"odd", 0.1}};
  q.loss = 0.123456789012345678;
  q.loss_init = 1.0 / 3.0;
  q.seconds = 2.5e-3;
  return q;
}

QuantizedLinear rtn_layer(int64_t out, int64_t in, int bits, const std::string& name) {
  QuantConfig qc;
  qc.method = "rtn";
  qc.bits = bits;
  qc.rtn.group_size = 16;
  auto quantizer = make_quantizer(qc, kSeed);
  return quantizer->quantize(at::randn({out, in}), at::eye(in), name);
}

json sample_provenance() {
  return {{"quant_config", {{"method", "rtn"}, {"bits", 3}, {"glvq", {{"iters", 200}, {"lr", 1e-3}}}}},
          {"quant_config_hash", "0123456789abcdef"},
          {"model_checksums", {{"model.layers.3.mlp.up_proj.weight", "aaaaaaaaaaaaaaaa"},
                               {"model.layers.3.self_attn.q_proj.weight", "bbbbbbbbbbbbbbbb"}}},
          {"git_commit", "abc123"},
          {"seed", 7}};
}

std::map<std::string, QuantizedLinear> block3_layers(at::Generator& gen) {
  std::map<std::string, QuantizedLinear> layers;
  layers["model.layers.3.self_attn.q_proj.weight"] = every_dtype_layer(gen);
  layers["model.layers.3.mlp.up_proj.weight"] = rtn_layer(48, 32, 3, "model.layers.3.mlp.up_proj.weight");
  layers["model.layers.3.mlp.down_proj.weight"] = rtn_layer(32, 48, 2, "model.layers.3.mlp.down_proj.weight");
  return layers;
}

void truncate_copy(const std::string& src, const std::string& dst, size_t size) {
  std::string bytes = test::read_bytes(src);
  ASSERT_LE(size, bytes.size());
  test::write_bytes(dst, bytes.substr(0, size));
}

// ---------------------------------------------------------------- checksums

TEST(CkptChecksum, Xxh64KnownVectors) {
  // Reference values of XXH64 with seed 0 (xxhash's sanity checks / python-xxhash docs).
  EXPECT_EQ(checksum_bytes("", 0), "ef46db3751d8e999");
  const std::string s = "Nobody inspects the spammish repetition";
  EXPECT_EQ(checksum_bytes(s.data(), s.size()), "fbcea83c8a378bf1");
  // Every tail length (0..31 after the 32-byte stripes) must change the hash.
  std::string data(100, 'x');
  std::set<std::string> seen;
  for (size_t n = 0; n <= data.size(); ++n) seen.insert(checksum_bytes(data.data(), n));
  EXPECT_EQ(seen.size(), data.size() + 1);
}

TEST(CkptChecksum, HashJsonIgnoresKeyOrder) {
  EXPECT_EQ(hash_json(json::parse(R"({"b": 1, "a": {"y": 2.5, "x": [1, 2]}})")),
            hash_json(json::parse(R"({"a": {"x": [1, 2], "y": 2.5}, "b": 1})")));
  EXPECT_NE(hash_json(json::parse(R"({"a": 1})")), hash_json(json::parse(R"({"a": 2})")));
  EXPECT_EQ(hash_json(json::object()).size(), 16u);
}

// ---------------------------------------------------------------- round trips

TEST(CkptBlock, RoundTripEveryDatasetExactly) {
  at::manual_seed(kSeed);
  at::Generator gen = seeded(kSeed);
  TempDir dir;
  const auto layers = block3_layers(gen);
  const std::string path = block_file_path(dir.path(), 3);
  EXPECT_EQ(path, dir.path() + "/block-3.h5");
  write_block_file(path, 3, layers, sample_provenance());
  const BlockFile bf = read_block_file(path);
  EXPECT_EQ(bf.block, 3);
  EXPECT_EQ(bf.provenance, sample_provenance());
  ASSERT_EQ(bf.layers.size(), layers.size());
  for (const auto& [name, q] : layers) {
    ASSERT_TRUE(bf.layers.count(name)) << name;
    expect_same_layer(q, bf.layers.at(name), name);
  }
  // The stored RTN layers rebuild exactly the same weights.
  for (const char* name : {"model.layers.3.mlp.up_proj.weight", "model.layers.3.mlp.down_proj.weight"}) {
    EXPECT_TRUE(at::equal(dequantize(layers.at(name)), dequantize(bf.layers.at(name)))) << name;
  }
  // Nothing but the final file is left in the directory.
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files.push_back(e.path().filename());
  EXPECT_EQ(files, std::vector<std::string>{"block-3.h5"});
}

TEST(CkptBlock, NarrowLastGroupNeedsFormatVersion2) {
  // Layers whose group size divides in keep format_version 1 (what older glvq
  // reads); one layer with a narrower last group makes the file version 2, which
  // an older reader refuses as "written by a newer glvq" instead of misreading it.
  at::manual_seed(kSeed + 9);
  at::Generator gen = seeded(kSeed + 9);
  TempDir dir;
  auto layers = block3_layers(gen);
  const std::string full = block_file_path(dir.path(), 3);
  write_block_file(full, 3, layers, sample_provenance());
  EXPECT_EQ(read_block_file(full).format_version, 1);
  {
    H5Handle f = h5_open_read(full, "block file");
    EXPECT_EQ(h5_get_attr_int(f.id(), "format_version", full), 1);
  }
  // in = 40 in groups of 16: 16, 16 and 8 columns.
  layers["model.layers.3.mlp.down_proj.weight"] = rtn_layer(32, 40, 2, "model.layers.3.mlp.down_proj.weight");
  EXPECT_EQ(layer_format_version(layers["model.layers.3.mlp.down_proj.weight"]), 2);
  EXPECT_EQ(layer_format_version(layers["model.layers.3.mlp.up_proj.weight"]), 1);
  const std::string narrow = dir.file("narrow.h5");
  write_block_file(narrow, 3, layers, sample_provenance());
  const BlockFile bf = read_block_file(narrow);
  EXPECT_EQ(bf.format_version, 2);
  for (const auto& [name, q] : layers) expect_same_layer(bf.layers.at(name), q, name);
  EXPECT_TRUE(at::equal(dequantize(bf.layers.at("model.layers.3.mlp.down_proj.weight")),
                        dequantize(layers.at("model.layers.3.mlp.down_proj.weight"))));
}

TEST(CkptBlock, RewriteIsByteIdentical) {
  // No timestamps in the file: a resumed run's block files equal an uninterrupted run's.
  at::Generator gen = seeded(kSeed + 1);
  TempDir dir;
  const auto layers = block3_layers(gen);
  write_block_file(dir.file("a.h5"), 3, layers, sample_provenance());
  // HDF5 stamps objects in whole seconds: the second write starts in a later second
  // (at most 1 s of waiting), so any recorded time would show.
  const std::time_t first = std::time(nullptr);
  while (std::time(nullptr) == first) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  write_block_file(dir.file("b.h5"), 3, layers, sample_provenance());
  EXPECT_EQ(test::read_bytes(dir.file("a.h5")), test::read_bytes(dir.file("b.h5")));
  // Overwriting an existing block file replaces it.
  write_block_file(dir.file("a.h5"), 3, {}, json{{"seed", 1}});
  const BlockFile bf = read_block_file(dir.file("a.h5"));
  EXPECT_TRUE(bf.layers.empty());
  EXPECT_EQ(bf.provenance, (json{{"seed", 1}}));
}

TEST(CkptBlock, LargeProvenanceAttribute) {
  // A 70B model has ~700 tensors: their checksums exceed HDF5's 64 KiB compact attribute limit.
  TempDir dir;
  json prov = sample_provenance();
  for (int i = 0; i < 3000; ++i) prov["model_checksums"][fmt::format("model.layers.{}.x.weight", i)] = "f00d";
  ASSERT_GT(prov.dump().size(), 100000u);
  write_block_file(dir.file("block-0.h5"), 0, {}, prov);
  EXPECT_EQ(read_block_file(dir.file("block-0.h5")).provenance, prov);
}

TEST(CkptBlock, RejectsLayersOfOtherBlocks) {
  at::Generator gen = seeded(kSeed + 2);
  TempDir dir;
  std::map<std::string, QuantizedLinear> layers = {{"model.layers.4.mlp.up_proj.weight", every_dtype_layer(gen)}};
  expect_error([&] { write_block_file(dir.file("block-3.h5"), 3, layers, json::object()); },
               {"block-3.h5", "model.layers.4.mlp.up_proj.weight", "another block"});
  layers = {{"lm_head.weight", every_dtype_layer(gen)}};
  expect_error([&] { write_block_file(dir.file("block-3.h5"), 3, layers, json::object()); },
               {"lm_head.weight", "not a decoder-layer weight"});
  // An attrs key that clashes with the format's own attributes.
  QuantizedLinear q = every_dtype_layer(gen);
  q.attrs["method"] = 1;
  expect_error([&] { write_block_file(dir.file("block-3.h5"), 3, {{"model.layers.3.mlp.up_proj.weight", q}}, {}); },
               {"'method'", "clashes"});
  EXPECT_FALSE(file_exists(dir.file("block-3.h5")));
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) ADD_FAILURE() << "left behind: " << e.path();
}

// ---------------------------------------------------------------- invalid files

TEST(CkptBlock, TruncatedFilesAreDetected) {
  at::Generator gen = seeded(kSeed + 3);
  TempDir dir;
  const std::string full = dir.file("full.h5");
  write_block_file(full, 3, block3_layers(gen), sample_provenance());
  const size_t size = test::read_bytes(full).size();
  ASSERT_GT(size, 4096u);
  for (size_t cut : {size_t(0), size_t(1), size_t(8), size_t(100), size_t(512), size / 4, size / 2,
                     size - 4096, size - 100, size - 1}) {
    SCOPED_TRACE("truncated to " + std::to_string(cut) + " of " + std::to_string(size) + " bytes");
    const std::string path = dir.file("block-3.h5");
    truncate_copy(full, path, cut);
    expect_error([&] { read_block_file(path); }, {path});
    const BlockFileCheck c = check_block_file(path, sample_provenance(), 3);
    EXPECT_EQ(c.state, BlockFileState::kInvalid);
    EXPECT_NE(c.why.find(path), std::string::npos) << c.why;
    std::string why;
    EXPECT_FALSE(block_file_matches(path, sample_provenance(), &why));
    EXPECT_FALSE(why.empty());
  }
  // The most common case names the diagnosis.
  const std::string path = dir.file("block-3.h5");
  truncate_copy(full, path, size / 2);
  expect_error([&] { read_block_file(path); }, {path, "truncated"});
}

TEST(CkptBlock, CorruptDataIsDetected) {
  at::Generator gen = seeded(kSeed + 4);
  TempDir dir;
  auto layers = block3_layers(gen);
  // A distinctive, uncompressed array whose bytes we can find in the file.
  layers["model.layers.3.self_attn.q_proj.weight"].arrays["codes"] = random_bits(at::kByte, {4096}, gen);
  const std::string path = dir.file("block-3.h5");
  write_block_file(path, 3, layers, sample_provenance());
  std::string bytes = test::read_bytes(path);
  const at::Tensor& codes = layers["model.layers.3.self_attn.q_proj.weight"].arrays["codes"];
  const std::string needle(static_cast<const char*>(codes.data_ptr()), 4096);
  const size_t at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 1000] ^= 0x10;
  test::write_bytes(path, bytes);
  expect_error([&] { read_block_file(path); }, {path, "self_attn.q_proj", "codes", "corrupt"});
  EXPECT_EQ(check_block_file(path, sample_provenance()).state, BlockFileState::kInvalid);
}

TEST(CkptBlock, ForeignAndOtherFilesAreRefused) {
  TempDir dir;
  // Valid HDF5 without glvq attributes.
  const std::string foreign = dir.file("foreign.h5");
  {
    H5Handle f = h5_create(foreign);
    h5_write_tensor(f.id(), "x", at::arange(10, at::kFloat), {}, "x");
    h5_close_file(f, foreign);
  }
  expect_error([&] { read_block_file(foreign); }, {foreign, "not a glvq block file", "'format'"});
  BlockFileCheck c = check_block_file(foreign, sample_provenance());
  EXPECT_EQ(c.state, BlockFileState::kInvalid);
  EXPECT_NE(c.why.find("not a glvq block file"), std::string::npos) << c.why;

  // Not HDF5 at all.
  const std::string text = dir.file("text.h5");
  test::write_bytes(text, "this is not an HDF5 file, just some text long enough to look like data\n");
  expect_error([&] { read_block_file(text); }, {text, "not an HDF5 file"});

  // A glvq file of another kind, and a newer version.
  const std::string other = dir.file("other.h5");
  for (auto [format, version, msg] : {std::tuple<const char*, int64_t, const char*>{"glvq", 1, "glvq checkpoint"},
                                      {"glvq-block", kBlockFormatVersion + 1, "newer glvq"},
                                      {"glvq-block", 0, "does not read"},
                                      {"something", 1, "format \"something\""}}) {
    {
      H5Handle f = h5_create(other);
      h5_set_attr(f.id(), "format", format);
      h5_set_attr(f.id(), "format_version", version);
      h5_close_file(f, other);
    }
    expect_error([&] { read_block_file(other); }, {other, msg});
  }

  // Right format, but the layers are missing.
  {
    H5Handle f = h5_create(other);
    h5_set_attr(f.id(), "format", kBlockFormat);
    h5_set_attr(f.id(), "format_version", kBlockFormatVersion);
    h5_set_attr(f.id(), "block", int64_t{3});
    h5_set_attr(f.id(), "provenance", "{}");
    h5_close_file(f, other);
  }
  expect_error([&] { read_block_file(other); }, {other, "'layers' is missing"});

  // Absent.
  c = check_block_file(dir.file("block-9.h5"), sample_provenance());
  EXPECT_EQ(c.state, BlockFileState::kAbsent);
  expect_error([&] { read_block_file(dir.file("block-9.h5")); }, {"block-9.h5", "does not exist"});
}

TEST(CkptBlock, MissingDatasetIsDetected) {
  at::Generator gen = seeded(kSeed + 5);
  TempDir dir;
  const std::string path = dir.file("block-3.h5");
  write_block_file(path, 3, block3_layers(gen), sample_provenance());
  {
    h5_quiet();
    H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    ASSERT_TRUE(f.valid());
    ASSERT_GE(H5Ldelete(f.id(), "/layers/3/mlp.up_proj/scale", H5P_DEFAULT), 0);
    h5_close_file(f, path);
  }
  expect_error([&] { read_block_file(path); }, {path, "/layers/3/mlp.up_proj", "'scale' is missing"});
}

// ---------------------------------------------------------------- provenance

TEST(CkptBlock, ProvenanceMismatchNamesTheKey) {
  at::Generator gen = seeded(kSeed + 6);
  TempDir dir;
  const std::string path = dir.file("block-3.h5");
  write_block_file(path, 3, block3_layers(gen), sample_provenance());

  BlockFile contents;
  BlockFileCheck c = check_block_file(path, sample_provenance(), 3, default_provenance_ignore(), &contents);
  EXPECT_EQ(c.state, BlockFileState::kMatches) << c.why;
  EXPECT_TRUE(c.why.empty());
  EXPECT_EQ(contents.layers.size(), 3u);
  std::string why = "unset";
  EXPECT_TRUE(block_file_matches(path, sample_provenance(), &why));
  EXPECT_TRUE(why.empty());

  // The code version alone does not invalidate a block.
  json p = sample_provenance();
  p["git_commit"] = "def456";
  EXPECT_TRUE(block_file_matches(path, p, &why)) << why;

  struct Case {
    std::function<void(json&)> change;
    std::string key;
  };
  const std::vector<Case> cases = {
      {[](json& j) { j["quant_config"]["bits"] = 2; }, "quant_config.bits"},
      {[](json& j) { j["quant_config"]["glvq"]["lr"] = 2e-3; }, "quant_config.glvq.lr"},
      {[](json& j) { j["quant_config_hash"] = "ffff"; }, "quant_config_hash"},
      {[](json& j) { j["model_checksums"]["model.layers.3.mlp.up_proj.weight"] = "cccc"; },
       "model_checksums.model.layers.3.mlp.up_proj.weight"},
      {[](json& j) { j.erase("seed"); }, "seed"},
      {[](json& j) { j["calib_seed"] = 3; }, "calib_seed"},
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(k.key);
    json e = sample_provenance();
    k.change(e);
    c = check_block_file(path, e, 3);
    EXPECT_EQ(c.state, BlockFileState::kMismatch);
    EXPECT_EQ(c.key, k.key);
    EXPECT_NE(c.why.find("setting " + k.key + " differs"), std::string::npos) << c.why;
    EXPECT_NE(c.why.find(path), std::string::npos) << c.why;
    EXPECT_FALSE(block_file_matches(path, e, &why));
    EXPECT_NE(why.find("setting " + k.key + " differs"), std::string::npos) << why;
  }
  // Values appear in the reason, "(absent)" for a missing key.
  json e = sample_provenance();
  e.erase("seed");
  EXPECT_NE(check_block_file(path, e).why.find("file: 7, this run: (absent)"), std::string::npos);

  // A file under the name of another block is not reused.
  c = check_block_file(path, sample_provenance(), 4);
  EXPECT_EQ(c.state, BlockFileState::kInvalid);
  EXPECT_NE(c.why.find("holds block 3, not block 4"), std::string::npos) << c.why;
}

TEST(CkptBlock, ProvenanceDiff) {
  std::string detail;
  EXPECT_EQ(provenance_diff(json{{"a", 1}}, json{{"a", 1.0}}, {}), "");
  EXPECT_EQ(provenance_diff(json{{"a", {{"b", {1, 2}}}}}, json{{"a", {{"b", {1, 3}}}}}, {}, &detail), "a.b");
  EXPECT_EQ(detail, "file: [1,2], this run: [1,3]");
  EXPECT_EQ(provenance_diff(json{{"x", 1}, {"y", 2}}, json{{"x", 2}, {"y", 3}}, {"x"}), "y");
  EXPECT_EQ(provenance_diff(json(1), json(2), {}), "(the whole provenance)");
}

}  // namespace
}  // namespace glvq
