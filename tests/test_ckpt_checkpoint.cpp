// The final checkpoint (model.glvq.h5): exact round trips of layers and of
// unquantized tensors in their original dtype, clear errors on bad files,
// glvq-export's safetensors directory, and glvq-inspect's summary.
#include "ckpt/checkpoint.h"
#include "ckpt/block_file.h"
#include "ckpt/export.h"
#include "ckpt/h5_util.h"
#include "ckpt/inspect.h"
#include "ckpt/run_report.h"
#include "common/fs_util.h"
#include "model/model_files.h"
#include "quant/glvq.h"
#include "quant/quantizer.h"

#include "base/test_util.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

namespace glvq {
namespace {

using json = nlohmann::json;
using test::expect_error;
using test::TempDir;

constexpr uint64_t kSeed = 977;

at::Generator seeded(uint64_t seed) {
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
  at::manual_seed(seed);
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

/// Random bit patterns of DTYPE (NaN payloads, -0 and Inf included).
at::Tensor random_bits(at::ScalarType dtype, at::IntArrayRef shape, at::Generator& gen) {
  const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  at::Tensor bytes = at::randint(0, 256, {n * elem}, gen, at::TensorOptions().dtype(at::kByte));
  return bytes.view(dtype).reshape(shape).clone();
}

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const at::Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.numel() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * ca.element_size()) == 0;
}

bool same_bytes(const TensorView& v, const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return v.nbytes == static_cast<size_t>(c.numel() * c.element_size()) &&
         std::memcmp(v.data, c.data_ptr(), v.nbytes) == 0;
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
    EXPECT_TRUE(same_bytes(t, b.arrays.at(name))) << what << "/" << name;
  }
}

QuantizedLinear rtn_layer(int64_t out, int64_t in, int bits, const std::string& name) {
  QuantConfig qc;
  qc.method = "rtn";
  qc.bits = bits;
  qc.rtn.group_size = 16;
  QuantizedLinear q = make_quantizer(qc, kSeed)->quantize(at::randn({out, in}), at::eye(in), name);
  q.loss = 0.5 + out;  // distinct, exactly representable
  q.loss_init = 1.0 / 7.0;
  return q;
}

/// A GLVQ-shaped layer whose G conditioning is known: cond(diag(1..d)) = d,
/// cond(I) = 1, and one singular (all-zero) matrix.
QuantizedLinear g_layer(at::Generator& gen) {
  const int64_t d = 4;
  QuantizedLinear q;
  q.method = "glvq";
  q.out = 8;
  q.in = 8;
  at::Tensor G = at::zeros({4, d, d});
  G[0] = at::diag(at::arange(1, d + 1, at::kFloat));
  G[1] = at::eye(d);
  G[2] = 2 * at::eye(d);
  q.arrays["G"] = G.to(at::kHalf);
  q.arrays["codes"] = random_bits(at::kByte, {16}, gen);
  q.arrays["mu"] = at::zeros({4}, at::kHalf);
  q.arrays["scale"] = at::ones({4}, at::kHalf);
  q.arrays["bits"] = at::full({4}, 2, at::TensorOptions().dtype(at::kByte));
  q.attrs = {{"dim", 4.0}, {"group_size", 8}, {"incoherence", 0}, {"seed", 0}};
  q.loss = 3;
  q.loss_init = 4;
  return q;
}

/// A small "model": layers in blocks 0, 1 and 10 (numeric order matters), a bf16
/// embedding with arbitrary bit patterns, fp32 norms, an fp16 lm_head.
struct Model {
  std::map<std::string, QuantizedLinear> layers;
  std::map<std::string, at::Tensor> tensors;
  CheckpointContents contents() const {
    CheckpointContents c;
    c.layers = layers;
    for (const auto& [name, t] : tensors) {
      TensorView v;
      v.name = name;
      v.dtype = dtype_of(t.scalar_type());
      v.shape.assign(t.sizes().begin(), t.sizes().end());
      v.data = t.data_ptr();
      v.nbytes = t.numel() * t.element_size();
      c.tensors.push_back(v);
    }
    c.info.model_config = "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"torch_dtype\": \"bfloat16\",\n"
                          "  \"hidden_size\": 32\n}\n";
    c.info.config = json{{"model", {{"path", "/nonexistent/model"}}}, {"quant", {{"method", "rtn"}}}}.dump();
    c.info.method = "rtn";
    c.info.git_commit = "0123456789ab";
    c.info.provenance = {{"quant_config_hash", "feedface"}, {"seed", 3}};
    return c;
  }
};

Model small_model(at::Generator& gen) {
  Model m;
  for (int b : {0, 1, 10}) {
    for (const char* lin : {"self_attn.q_proj", "mlp.down_proj"}) {
      const std::string name = fmt::format("model.layers.{}.{}.weight", b, lin);
      m.layers[name] = rtn_layer(32, 48, 2 + b % 3, name);
    }
  }
  m.tensors["model.embed_tokens.weight"] = random_bits(at::kBFloat16, {50, 48}, gen);
  m.tensors["model.norm.weight"] = at::randn({48});
  m.tensors["model.layers.0.input_layernorm.weight"] = at::randn({48});
  m.tensors["lm_head.weight"] = at::randn({50, 48}).to(at::kHalf);
  return m;
}

// ---------------------------------------------------------------- round trip

TEST(CkptCheckpoint, RoundTripExactly) {
  at::Generator gen = seeded(kSeed);
  TempDir dir;
  Model m = small_model(gen);
  m.layers["model.layers.1.mlp.up_proj.weight"] = g_layer(gen);
  const CheckpointContents c = m.contents();
  const std::string path = dir.file("model.glvq.h5");
  write_checkpoint(path, c);

  CheckpointReader r(path);
  EXPECT_EQ(r.path(), path);
  const json root = r.root_attrs();
  EXPECT_EQ(root["format"], "glvq");
  EXPECT_EQ(root["format_version"], 1);  // no layer has a narrower last group
  EXPECT_EQ(root["model_config"], json::parse(c.info.model_config));
  EXPECT_EQ(r.root_attr_text("model_config"), c.info.model_config);  // verbatim
  EXPECT_EQ(root["config"], json::parse(c.info.config));
  EXPECT_EQ(root["method"], "rtn");
  EXPECT_EQ(root["git_commit"], "0123456789ab");
  EXPECT_EQ(root["provenance"], c.info.provenance);
  EXPECT_EQ(root["layer_count"], 7);
  EXPECT_EQ(root["tensor_count"], 4);

  // Bits are those of what was stored, exactly.
  BitsBreakdown bits;
  for (const auto& [name, q] : m.layers) bits += count_bits(q);
  EXPECT_DOUBLE_EQ(root["bits_per_weight"].get<double>(), bits.total());
  EXPECT_EQ(root["bits_breakdown"], bits_breakdown_json(bits));
  double unq_bits = 0, unq_params = 0;
  for (const auto& [name, t] : m.tensors) unq_bits += 8.0 * t.numel() * t.element_size(), unq_params += t.numel();
  EXPECT_DOUBLE_EQ(root["bits_per_weight_model"].get<double>(),
                   (bits.total() * bits.weights + unq_bits) / (bits.weights + unq_params));
  for (const auto& [name, q] : m.layers) {
    EXPECT_EQ(root["layer_losses"][name]["loss"].get<double>(), q.loss) << name;
    EXPECT_EQ(root["layer_losses"][name]["loss_init"].get<double>(), q.loss_init) << name;
  }

  const std::vector<std::string> expected_order = {
      "model.layers.0.mlp.down_proj.weight",  "model.layers.0.self_attn.q_proj.weight",
      "model.layers.1.mlp.down_proj.weight",  "model.layers.1.mlp.up_proj.weight",
      "model.layers.1.self_attn.q_proj.weight", "model.layers.10.mlp.down_proj.weight",
      "model.layers.10.self_attn.q_proj.weight"};
  EXPECT_EQ(r.layer_names(), expected_order);
  for (const auto& [name, q] : m.layers) {
    ASSERT_TRUE(r.has_layer(name));
    expect_same_layer(q, r.layer(name), name);
    const QuantizedLinear h = r.layer_header(name);
    EXPECT_TRUE(h.arrays.empty());
    EXPECT_EQ(h.out, q.out);
    EXPECT_EQ(h.attrs, q.attrs);
    const auto info = r.layer_array_info(name);
    ASSERT_EQ(info.size(), q.arrays.size());
    for (const auto& [a, t] : q.arrays) {
      EXPECT_EQ(info.at(a).dtype, dtype_of(t.scalar_type())) << name << "/" << a;
      EXPECT_EQ(info.at(a).nbytes, static_cast<size_t>(t.numel() * t.element_size()));
    }
  }
  EXPECT_FALSE(r.has_layer("model.layers.2.mlp.down_proj.weight"));
  expect_error([&] { r.layer("model.layers.2.mlp.down_proj.weight"); }, {path, "no quantized layer"});

  std::vector<std::string> names;
  for (const auto& [name, t] : m.tensors) names.push_back(name);
  EXPECT_EQ(r.tensor_names(), names);
  for (const auto& [name, t] : m.tensors) {
    const at::Tensor back = r.tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;  // bf16 stays bf16
    EXPECT_TRUE(same_bytes(back, t)) << name;
    const StoredTensorInfo info = r.tensor_info(name);
    EXPECT_EQ(info.shape, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()));
    EXPECT_EQ(info.nbytes, info.storage_bytes);  // unquantized tensors are stored uncompressed
  }
  expect_error([&] { r.tensor("nope"); }, {path, "no unquantized tensor nope"});
}

TEST(CkptCheckpoint, CompressionWhereItHelps) {
  seeded(kSeed + 6);
  TempDir dir;
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  CheckpointContents c;
  c.layers[name] = rtn_layer(256, 512, 2, name);
  write_checkpoint(dir.file("model.glvq.h5"), c);
  CheckpointReader r(dir.file("model.glvq.h5"));
  const auto info = r.layer_array_info(name);
  EXPECT_EQ(info.at("codes").storage_bytes, info.at("codes").nbytes);  // packed codes: stored as they are
  EXPECT_LT(info.at("zero").storage_bytes, info.at("zero").nbytes / 4);  // small integers in fp16
  EXPECT_LT(info.at("scale").storage_bytes, info.at("scale").nbytes);
  expect_same_layer(c.layers[name], r.layer(name), name);
}

TEST(CkptCheckpoint, StreamingWriterAndAbandonedWriter) {
  at::Generator gen = seeded(kSeed + 1);
  TempDir dir;
  const Model m = small_model(gen);
  const std::string path = dir.file("model.glvq.h5");
  {
    CheckpointWriter w(path);
    w.add_layer("model.layers.0.mlp.down_proj.weight", m.layers.at("model.layers.0.mlp.down_proj.weight"));
    expect_error([&] { w.add_layer("model.layers.0.mlp.down_proj.weight", m.layers.at("model.layers.0.mlp.down_proj.weight")); },
                 {path, "added twice"});
    expect_error([&] { w.add_tensor("a/b", at::zeros({2})); }, {"a/b", "'/'"});
    // Destroyed unfinished (an error in gather): nothing may remain.
  }
  EXPECT_FALSE(file_exists(path));
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) ADD_FAILURE() << "left behind: " << e.path();

  // Streaming gives the same file as write_checkpoint.
  const CheckpointContents c = m.contents();
  write_checkpoint(dir.file("a.h5"), c);
  {
    CheckpointWriter w(dir.file("b.h5"));
    for (const auto& [name, q] : c.layers) w.add_layer(name, q);
    for (const auto& [name, t] : m.tensors) w.add_tensor(name, t);
    w.finish(c.info);
  }
  EXPECT_EQ(test::read_bytes(dir.file("a.h5")), test::read_bytes(dir.file("b.h5")));
}

TEST(CkptCheckpoint, BadFilesGiveClearErrors) {
  at::Generator gen = seeded(kSeed + 2);
  TempDir dir;
  const std::string path = dir.file("model.glvq.h5");
  write_checkpoint(path, small_model(gen).contents());
  const std::string bytes = test::read_bytes(path);
  const std::string cut = dir.file("cut.h5");
  for (size_t n : {size_t(0), size_t(64), size_t(2048), bytes.size() / 3, bytes.size() / 2, bytes.size() - 1}) {
    SCOPED_TRACE(n);
    test::write_bytes(cut, bytes.substr(0, n));
    expect_error([&] { CheckpointReader r(cut); }, {cut});
    expect_error([&] { inspect_file(cut); }, {cut});
    expect_error([&] { export_checkpoint(cut, dir.file("out")); }, {cut});
  }
  test::write_bytes(cut, bytes.substr(0, bytes.size() / 2));
  expect_error([&] { CheckpointReader r(cut); }, {cut, "truncated"});

  const std::string foreign = dir.file("foreign.h5");
  {
    H5Handle f = h5_create(foreign);
    H5Handle g = h5_create_group(f.id(), "layers", foreign);
    h5_write_tensor(g.id(), "w", at::ones({3, 3}), {}, "w");
    g.reset();
    h5_close_file(f, foreign);
  }
  expect_error([&] { CheckpointReader r(foreign); }, {foreign, "not a glvq checkpoint"});
  expect_error([&] { inspect_file(foreign); }, {foreign, "not a glvq checkpoint or block file"});

  const std::string block = dir.file("block-0.h5");
  write_block_file(block, 0, {}, json::object());
  expect_error([&] { CheckpointReader r(block); }, {block, "glvq block file", "not a glvq checkpoint"});
  expect_error([&] { CheckpointReader r(dir.file("absent.h5")); }, {"absent.h5", "does not exist"});
  test::write_bytes(dir.file("text.h5"), std::string(3000, 'x'));
  expect_error([&] { CheckpointReader r(dir.file("text.h5")); }, {"text.h5", "not an HDF5 file"});

  // A layer group removed after writing: the counts no longer add up.
  {
    h5_quiet();
    H5Handle f(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    ASSERT_TRUE(f.valid());
    ASSERT_GE(H5Ldelete(f.id(), "/layers/10/mlp.down_proj", H5P_DEFAULT), 0);
    h5_close_file(f, path);
  }
  expect_error([&] { CheckpointReader r(path); }, {path, "incomplete", "lists 6 layers and 4 tensors but holds 5 and 4"});
}

// ---------------------------------------------------------------- export

TEST(CkptExport, WritesALoadableModelDirectory) {
  at::Generator gen = seeded(kSeed + 3);
  TempDir dir;
  Model m = small_model(gen);
  CheckpointContents c = m.contents();
  const std::string tok = dir.file("src-model");
  ensure_dir(tok);
  test::write_bytes(tok + "/tokenizer.model", std::string("\x0a\x05hello\x00\x01", 9));
  test::write_bytes(tok + "/tokenizer_config.json", "{\"add_bos_token\": true}\n");
  c.info.config = json{{"model", {{"path", tok}}}}.dump();
  const std::string path = dir.file("model.glvq.h5");
  write_checkpoint(path, c);

  const std::string out = dir.file("export");
  const ExportResult res = export_checkpoint(path, out);
  EXPECT_TRUE(res.warnings.empty()) << res.warnings.front();
  EXPECT_EQ(res.dtype, "BF16");
  EXPECT_EQ(test::read_bytes(out + "/config.json"), c.info.model_config);
  EXPECT_EQ(test::read_bytes(out + "/tokenizer.model"), test::read_bytes(tok + "/tokenizer.model"));
  EXPECT_EQ(test::read_bytes(out + "/tokenizer_config.json"), test::read_bytes(tok + "/tokenizer_config.json"));
  EXPECT_TRUE(file_exists(out + "/model.safetensors"));
  EXPECT_FALSE(file_exists(out + "/model.safetensors.index.json"));

  ModelFiles files(out);
  EXPECT_EQ(files.names().size(), m.layers.size() + m.tensors.size());
  for (const auto& [name, q] : m.layers) {
    const TensorView& v = files.get(name);
    EXPECT_EQ(v.dtype, DType::BF16) << name;
    EXPECT_EQ(v.shape, (std::vector<int64_t>{q.out, q.in})) << name;
    EXPECT_TRUE(same_bytes(v, dequantize(q).to(at::kBFloat16))) << name;
  }
  for (const auto& [name, t] : m.tensors) {
    const TensorView& v = files.get(name);
    EXPECT_EQ(v.dtype, dtype_of(t.scalar_type())) << name;  // original dtype kept
    EXPECT_TRUE(same_bytes(v, t)) << name;
  }
  EXPECT_EQ(SafetensorsFile::open(out + "/model.safetensors")->metadata().at("format"), "pt");
}

TEST(CkptExport, ShardsDtypesAndWarnings) {
  at::Generator gen = seeded(kSeed + 4);
  TempDir dir;
  Model m = small_model(gen);
  CheckpointContents c = m.contents();
  c.info.model_config = R"({"torch_dtype": "float16"})";
  const std::string path = dir.file("model.glvq.h5");
  write_checkpoint(path, c);
  const std::string out = dir.file("export");
  ensure_dir(out);
  test::write_bytes(out + "/model.safetensors", "stale");

  ExportOptions opt;
  opt.max_shard_bytes = 6000;  // a few tensors per shard
  const ExportResult res = export_checkpoint(path, out, opt);
  EXPECT_EQ(res.dtype, "F16");
  EXPECT_FALSE(file_exists(out + "/model.safetensors"));  // the stale single file would shadow the shards
  ASSERT_TRUE(file_exists(out + "/model.safetensors.index.json"));
  const json index = json::parse(test::read_bytes(out + "/model.safetensors.index.json"));
  std::set<std::string> shard_files;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) shard_files.insert(it.value());
  EXPECT_GT(shard_files.size(), 2u);
  // No tokenizer directory recorded / existing: a warning, not an error.
  ASSERT_FALSE(res.warnings.empty());
  bool warned = false;
  for (const auto& w : res.warnings) warned |= w.find("no tokenizer copied") != std::string::npos;
  EXPECT_TRUE(warned);

  ModelFiles files(out);
  for (const auto& [name, q] : m.layers) {
    EXPECT_TRUE(same_bytes(files.get(name), dequantize(q).to(at::kHalf))) << name;
  }
  for (const auto& [name, t] : m.tensors) EXPECT_TRUE(same_bytes(files.get(name), t)) << name;

  // Exporting again as a single file removes the index that would shadow it.
  export_checkpoint(path, out);
  EXPECT_FALSE(file_exists(out + "/model.safetensors.index.json"));
  EXPECT_EQ(ModelFiles(out).names().size(), m.layers.size() + m.tensors.size());
  for (const std::string& f : shard_files) EXPECT_FALSE(file_exists(out + "/" + f)) << "stale shard " << f;

  // A dtype export cannot write is refused, naming the key.
  c.info.model_config = R"({"torch_dtype": "int8"})";
  write_checkpoint(path, c);
  expect_error([&] { export_checkpoint(path, out); }, {path, "torch_dtype", "int8"});
}

// ---------------------------------------------------------------- inspect

TEST(CkptInspect, SummarisesLayersAndConditioning) {
  at::Generator gen = seeded(kSeed + 5);
  TempDir dir;
  Model m = small_model(gen);
  m.layers["model.layers.1.mlp.up_proj.weight"] = g_layer(gen);
  const std::string path = dir.file("model.glvq.h5");
  write_checkpoint(path, m.contents());
  const json s = inspect_file(path);
  EXPECT_EQ(s["kind"], "checkpoint");
  ASSERT_EQ(s["layers"].size(), m.layers.size());
  BitsBreakdown bits;
  for (const auto& [name, q] : m.layers) bits += count_bits(q);
  EXPECT_EQ(s["totals"]["weights"], bits.weights);
  EXPECT_DOUBLE_EQ(s["totals"]["bits"]["total"].get<double>(), bits.total());
  EXPECT_EQ(s["totals"]["unquantized_params"], 50 * 48 * 2 + 48 * 2);
  for (const auto& l : s["layers"]) {
    const QuantizedLinear& q = m.layers.at(l["name"].get<std::string>());
    EXPECT_EQ(l["shape"], json({q.out, q.in}));
    EXPECT_EQ(l["loss"].get<double>(), q.loss);
    EXPECT_GT(l["storage_bytes"].get<int64_t>(), 0);
    if (l["name"] == "model.layers.1.mlp.up_proj.weight") {
      EXPECT_EQ(l["g_cond"]["groups"], 4);
      EXPECT_EQ(l["g_cond"]["singular"], 1);
      EXPECT_NEAR(l["g_cond"]["max"].get<double>(), 4.0, 1e-9);
      EXPECT_NEAR(l["g_cond"]["median"].get<double>(), 1.0, 1e-9);
    } else {
      EXPECT_FALSE(l.contains("g_cond"));
    }
  }
  const std::string text = inspect_text(s);
  for (const auto& [name, q] : m.layers) EXPECT_NE(text.find(name), std::string::npos) << name;
  EXPECT_NE(text.find("model.embed_tokens.weight BF16"), std::string::npos) << text;

  // Block files are summarised too.
  const std::string block = dir.file("block-1.h5");
  write_block_file(block, 1, {{"model.layers.1.mlp.up_proj.weight", g_layer(gen)}}, json{{"seed", 1}});
  const json b = inspect_file(block);
  EXPECT_EQ(b["kind"], "block");
  EXPECT_EQ(b["root"]["block"], 1);
  EXPECT_EQ(b["layers"].size(), 1u);
  EXPECT_NEAR(b["layers"][0]["g_cond"]["max"].get<double>(), 4.0, 1e-9);
  InspectOptions no_cond;
  no_cond.conditioning = false;
  EXPECT_FALSE(inspect_file(block, no_cond)["layers"][0].contains("g_cond"));
}

TEST(CkptCheckpoint, NarrowLastGroupsRoundTripInspectAndExport) {
  // Layers with a narrower last group (RTN 40 = 16 + 16 + 8 columns; GLVQ 100 =
  // 32 + 32 + 32 + 4, the last vector padded): format_version 2, read back exactly,
  // inspected and exported as their dequantized weights.
  at::Generator gen = seeded(kSeed + 7);
  at::manual_seed(kSeed + 7);
  TempDir dir;
  Model m = small_model(gen);
  m.layers["model.layers.0.mlp.down_proj.weight"] = rtn_layer(32, 40, 3, "model.layers.0.mlp.down_proj.weight");
  GlvqOptions o;
  o.bits = 2;
  o.cfg.dim = 8;
  o.cfg.group_size = 32;
  o.cfg.iters = 3;
  const at::Tensor X = at::randn({64, 100});
  m.layers["model.layers.1.mlp.down_proj.weight"] = glvq_quantize_layer(
      at::randn({16, 100}) * 0.02, X.t().mm(X) / 64.0, "model.layers.1.mlp.down_proj.weight", o);
  CheckpointContents c = m.contents();
  const std::string path = dir.file("model.glvq.h5");
  write_checkpoint(path, c);
  CheckpointReader r(path);
  EXPECT_EQ(r.root_attrs()["format_version"], 2);
  for (const auto& [name, q] : m.layers) expect_same_layer(r.layer(name), q, name);
  EXPECT_EQ(inspect_file(path)["format_version"], 2);
  const std::string out = dir.file("export");
  ExportOptions eo;
  eo.tokenizer_dir = dir.path();
  export_checkpoint(path, out, eo);
  ModelFiles files(out);
  for (const auto& [name, q] : m.layers)
    EXPECT_TRUE(same_bytes(files.get(name), dequantize(q).to(at::kBFloat16))) << name;
}

// Per-group bit widths (the report's bit map) from GLVQ's bit map and from the grid methods'
// parameters, in the full read and the header-only read the worker uses.
TEST(CkptInspect, BitGroupsInBothReadModes) {
  at::Generator gen = seeded(kSeed + 6);
  TempDir dir;
  Model m = small_model(gen);
  QuantizedLinear g = g_layer(gen);
  const std::vector<uint8_t> widths = {3, 1, 3, 2};
  g.arrays["bits"] = at::tensor(std::vector<int64_t>(widths.begin(), widths.end())).to(at::kByte);
  m.layers["model.layers.1.mlp.up_proj.weight"] = g;
  const std::string path = dir.file("model.glvq.h5");
  write_checkpoint(path, m.contents());
  InspectOptions light;
  light.read_arrays = false;
  const json full = inspect_file(path), header = inspect_file(path, light);
  ASSERT_EQ(full["layers"].size(), header["layers"].size());
  for (size_t i = 0; i < full["layers"].size(); ++i) {
    const json& f = full["layers"][i];
    const json& h = header["layers"][i];
    const QuantizedLinear& q = m.layers.at(f["name"].get<std::string>());
    json want = json::object();
    if (q.method == "glvq") {
      for (uint8_t w : widths) want[std::to_string(w)] = want.value(std::to_string(w), 0) + 1;
    } else {  // every (row, group of 16 columns) at the layer's bits
      want[std::to_string(static_cast<int>(q.attrs.at("bits")))] = q.out * (q.in / 16);
    }
    EXPECT_EQ(f["bit_groups"], want) << f["name"];
    EXPECT_EQ(h["bit_groups"], want) << h["name"];
    EXPECT_EQ(h["bits"], bits_breakdown_json(count_bits(q))) << "sizes alone give count_bits' figures";
    EXPECT_EQ(h["loss"], f["loss"]);
    EXPECT_FALSE(h.contains("g_cond"));
  }
  EXPECT_EQ(header["totals"]["bits"], full["totals"]["bits"]);
  EXPECT_EQ(full["root"]["config"]["quant"]["method"], "rtn");
}

int heatmap_layers_with_rel(const RunView& v) {
  int n = 0;
  for (const LayerView& l : v.layers) n += l.rel_loss.has_value();
  return n;
}

TEST(CkptRunReport, JoinsTheReportBesideTheCheckpoint) {
  at::Generator gen = seeded(kSeed + 7);
  TempDir dir;
  const Model m = small_model(gen);
  const std::string path = dir.file("model.glvq.h5");
  write_checkpoint(path, m.contents());
  const double bpw = CheckpointReader(path).root_attrs()["bits_per_weight"].get<double>();
  // No report.json: the view has the layers, no relative losses.
  RunView v = checkpoint_run_view(path);
  EXPECT_EQ(v.layers.size(), m.layers.size());
  EXPECT_FALSE(v.ppl_quant.has_value());
  EXPECT_EQ(heatmap_layers_with_rel(v), 0);
  // A matching report.json beside it is read.
  const std::string name = "model.layers.10.mlp.down_proj.weight";
  json report = {{"method", "rtn"}, {"bits_per_weight", bpw}, {"ppl_quant", 7.25},
                 {"per_rank", {{{"layer_losses", {{name, {{"loss", 1.0}, {"loss_init", 1.0}, {"rel_loss", 0.125}}}}}}}}};
  write_file_atomic(dir.file("report.json"), report.dump());
  v = checkpoint_run_view(path);
  EXPECT_EQ(*v.ppl_quant, 7.25);
  EXPECT_EQ(heatmap_layers_with_rel(v), 1);
  // One that describes another checkpoint: left out when found, an error when asked for.
  report["bits_per_weight"] = bpw + 1;
  write_file_atomic(dir.file("report.json"), report.dump());
  EXPECT_FALSE(checkpoint_run_view(path).ppl_quant.has_value());
  CheckpointViewOptions opt;
  opt.report_path = dir.file("report.json");
  expect_error([&] { checkpoint_run_view(path, opt); }, {dir.file("report.json"), path, "bits per weight"});
  opt.report_path = dir.file("absent.json");
  expect_error([&] { checkpoint_run_view(path, opt); }, {dir.file("absent.json"), "does not exist"});
  // The worker's page: written whole, beside report.json.
  write_run_report_html(dir.path(), json{{"method", "rtn"}, {"bits_per_weight", bpw}, {"ppl_fp", 6.0}});
  const std::string html = read_file(dir.file("report.html"));
  EXPECT_NE(html.find("data-key=\"ppl_fp\" data-v=\"6\""), std::string::npos);
  EXPECT_NE(html.find("</html>"), std::string::npos);
}

}  // namespace
}  // namespace glvq
