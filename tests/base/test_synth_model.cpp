// glvq-synth's generator: the directory it writes is a Llama model that the
// project's own loader reads (layout, shapes, dtype, index), the weights are a
// function of the seed alone, and the outlier input channels are really there.
#include "model/synth_model.h"

#include "model/llama_config.h"
#include "model/model_files.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace glvq {
namespace {

using test::TempDir;

SynthOptions small_options(uint64_t seed) {
  SynthOptions o;
  o.shape.hidden = 64;
  o.shape.intermediate = 160;
  o.shape.heads = 4;
  o.shape.kv_heads = 2;
  o.shape.vocab = 4096;
  o.shape.blocks = 2;
  o.seed = seed;
  o.shard_bytes = 40000;  // several shards
  o.outlier_fraction = 0.05;
  o.tokenizer_from = GLVQ_SOURCE_DIR "/models/tiny-llama";
  o.threads = 3;
  return o;
}

float bf16_to_float(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(SynthModel, LoaderReadsEveryTensorWithTheLlamaLayout) {
  TempDir tmp;
  const std::string dir = tmp.file("m");
  const SynthOptions o = small_options(11);
  synth_write_model(dir, o);
  const LlamaConfig c = load_llama_config(dir);
  EXPECT_EQ(c.hidden, 64);
  EXPECT_EQ(c.intermediate, 160);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab, 4096);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(c.max_positions, 4096);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.raw["architectures"], nlohmann::json::array({"LlamaForCausalLM"}));

  // The layout written independently here, from the Llama architecture.
  std::map<std::string, std::vector<int64_t>> want = {{"model.embed_tokens.weight", {4096, 64}},
                                                      {"model.norm.weight", {64}},
                                                      {"lm_head.weight", {4096, 64}}};
  for (int b = 0; b < 2; ++b) {
    const std::string p = "model.layers." + std::to_string(b) + ".";
    want[p + "input_layernorm.weight"] = {64};
    want[p + "post_attention_layernorm.weight"] = {64};
    want[p + "self_attn.q_proj.weight"] = {64, 64};
    want[p + "self_attn.k_proj.weight"] = {32, 64};
    want[p + "self_attn.v_proj.weight"] = {32, 64};
    want[p + "self_attn.o_proj.weight"] = {64, 64};
    want[p + "mlp.gate_proj.weight"] = {160, 64};
    want[p + "mlp.up_proj.weight"] = {160, 64};
    want[p + "mlp.down_proj.weight"] = {64, 160};
  }
  ModelFiles files(dir);
  const auto names = files.names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()).size(), want.size());
  for (const auto& [name, shape] : want) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(files.has(name));
    const TensorView& v = files.get(name);
    EXPECT_EQ(v.dtype, DType::BF16);
    EXPECT_EQ(v.shape, shape);
    const uint16_t* p = static_cast<const uint16_t*>(v.data);
    for (int64_t i = 0; i < v.numel(); ++i) ASSERT_TRUE(std::isfinite(bf16_to_float(p[i])));
  }

  // The index names each tensor once, in an existing shard that holds it.
  const auto index = nlohmann::json::parse(slurp(dir + "/model.safetensors.index.json"));
  std::set<std::string> shard_files;
  for (const auto& [name, file] : index["weight_map"].items()) {
    EXPECT_TRUE(want.count(name)) << name;
    EXPECT_EQ(files.get(name).file, dir + "/" + file.get<std::string>());
    shard_files.insert(file.get<std::string>());
  }
  EXPECT_EQ(index["weight_map"].size(), want.size());
  EXPECT_GE(shard_files.size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(dir + "/tokenizer.model"));
}

TEST(SynthModel, WeightsAreAFunctionOfTheSeed) {
  TempDir tmp;
  SynthOptions a = small_options(5), b = small_options(5), c = small_options(6);
  b.threads = 1;  // the thread count must not matter
  synth_write_model(tmp.file("a"), a);
  synth_write_model(tmp.file("b"), b);
  synth_write_model(tmp.file("c"), c);
  for (const auto& e : std::filesystem::directory_iterator(tmp.file("a"))) {
    const std::string f = e.path().filename().string();
    if (f.find(".safetensors") == std::string::npos || f.find("index") != std::string::npos) continue;
    SCOPED_TRACE(f);
    EXPECT_EQ(slurp(tmp.file("a") + "/" + f), slurp(tmp.file("b") + "/" + f));
    EXPECT_NE(slurp(tmp.file("a") + "/" + f), slurp(tmp.file("c") + "/" + f));
  }
}

TEST(SynthModel, OutlierInputChannelsStandOut) {
  TempDir tmp;
  const SynthOptions o = small_options(7);
  synth_write_model(tmp.file("m"), o);
  const std::vector<int> out = synth_outlier_channels(o.shape, o.seed, o.outlier_fraction);
  ASSERT_FALSE(out.empty());
  ModelFiles files(tmp.file("m"));
  for (const char* layer : {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight"}) {
    SCOPED_TRACE(layer);
    const TensorView& v = files.get(layer);
    const int64_t rows = v.shape[0], cols = v.shape[1];
    std::vector<double> norm(cols, 0.0);
    const uint16_t* p = static_cast<const uint16_t*>(v.data);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) norm[c] += std::pow(bf16_to_float(p[r * cols + c]), 2);
    std::set<int> o_set(out.begin(), out.end());
    double min_out = 1e300, max_rest = 0;
    for (int64_t c = 0; c < cols; ++c)
      (o_set.count(static_cast<int>(c)) ? min_out = std::min(min_out, norm[c]) : max_rest = std::max(max_rest, norm[c]));
    // Outlier columns are scaled x10..30 against a log-normal spread of 0.25: even the
    // weakest one is far above the strongest ordinary column.
    EXPECT_GT(std::sqrt(min_out / max_rest), 3.0);
  }
}

TEST(SynthModel, Llama2_70bPresetHasTheRealModelsShape) {
  // Llama-2-70B has 68,976,648,192 parameters (80 blocks): the preset's tensor list must add up to it.
  int64_t params = 0;
  for (const SynthTensor& t : synth_tensor_list(synth_preset("llama2-70b", 80))) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    params += n;
  }
  EXPECT_EQ(params, 68976648192);
  const SynthShape s = synth_preset("llama2-70b", 3);
  EXPECT_EQ(s.blocks, 3);
  EXPECT_EQ(s.vocab, 32000);
  EXPECT_EQ(s.kv_heads, 8);
  test::expect_error([] { synth_preset("llama2-13b", 1); }, {"unknown --preset 'llama2-13b'", "llama2-70b", "llama2-7b"});
}

TEST(SynthModel, Llama2_7bPresetHasTheRealModelsShape) {
  // Llama-2-7B has 6,738,415,616 parameters (32 blocks, untied lm_head).
  int64_t params = 0;
  for (const SynthTensor& t : synth_tensor_list(synth_preset("llama2-7b", 32))) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    params += n;
  }
  EXPECT_EQ(params, 6738415616);
  EXPECT_EQ(synth_preset("llama2-7b", 32).kv_heads, 32);
}

TEST(SynthModel, RefusesATokenizerLargerThanTheVocabulary) {
  TempDir tmp;
  SynthOptions o = small_options(1);
  o.shape.vocab = 100;
  test::expect_error([&] { synth_write_model(tmp.file("m"), o); }, {"more than --vocab"});
  EXPECT_FALSE(std::filesystem::exists(tmp.file("m")));
}

}  // namespace
}  // namespace glvq
