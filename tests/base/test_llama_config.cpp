// config.json variants found in the wild, and a clear error for each field we
// cannot handle.
#include "model/llama_config.h"

#include "test_util.h"

#include <gtest/gtest.h>

namespace glvq {
namespace {

using json = nlohmann::json;
using test::expect_error;
using test::TempDir;

// Llama-2-7B's config.json as transformers 4.3x wrote it: torch_dtype,
// top-level rope_theta, no head_dim.
json llama2_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": null,
    "rope_theta": 500000.0,
    "tie_word_embeddings": false,
    "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0",
    "use_cache": true,
    "vocab_size": 32000
  })");
}

const std::string kOrigin = "/models/x/config.json";

TEST(LlamaConfig, ShippedTinyLlama) {
  const LlamaConfig c = load_llama_config(test::source_dir() + "/models/tiny-llama");
  EXPECT_EQ(c.hidden, 384);
  EXPECT_EQ(c.intermediate, 1024);
  EXPECT_EQ(c.n_layers, 6);
  EXPECT_EQ(c.n_heads, 6);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab, 4096);
  EXPECT_EQ(c.max_positions, 2048);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, "bfloat16");
  EXPECT_EQ(c.raw.at("model_type"), "llama");
}

TEST(LlamaConfig, Llama2Style) {
  const LlamaConfig c = parse_llama_config(llama2_config(), kOrigin);
  EXPECT_EQ(c.hidden, 4096);
  EXPECT_EQ(c.intermediate, 11008);
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 32);  // absent: MHA
  EXPECT_EQ(c.head_dim, 128);   // derived: 4096 / 32
  EXPECT_EQ(c.vocab, 32000);
  EXPECT_EQ(c.max_positions, 4096);
  EXPECT_DOUBLE_EQ(c.rope_theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-5);
  EXPECT_EQ(c.dtype, "float16");
}

TEST(LlamaConfig, Defaults) {
  const json j = {{"hidden_size", 64}, {"intermediate_size", 128}, {"num_hidden_layers", 2},
                  {"num_attention_heads", 4}, {"vocab_size", 100}};
  const LlamaConfig c = parse_llama_config(j, kOrigin);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.max_positions, 2048);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.rms_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.dtype, "float32");
}

TEST(LlamaConfig, MultiQueryAttention) {
  json j = llama2_config();
  j["num_key_value_heads"] = 1;
  j["tie_word_embeddings"] = true;
  const LlamaConfig c = parse_llama_config(j, kOrigin);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(LlamaConfig, ExplicitHeadDimDifferentFromHiddenOverHeads) {
  json j = llama2_config();
  j["num_attention_heads"] = 16;
  j["num_key_value_heads"] = 8;
  j["head_dim"] = 128;  // 16 * 128 = 2048 != 4096
  const LlamaConfig c = parse_llama_config(j, kOrigin);
  EXPECT_EQ(c.head_dim, 128);
  j["head_dim"] = nullptr;  // null means "derive it"
  EXPECT_EQ(parse_llama_config(j, kOrigin).head_dim, 256);
}

TEST(LlamaConfig, RopeParametersAndDtypeSpellings) {
  json j = llama2_config();
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j.erase("torch_dtype");
  j["rope_parameters"] = {{"rope_theta", 1e6}, {"rope_type", "default"}};
  j["dtype"] = "bfloat16";
  LlamaConfig c = parse_llama_config(j, kOrigin);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.dtype, "bfloat16");
  // Both spellings present and agreeing is fine; disagreeing is an error.
  j["rope_theta"] = 1e6;
  EXPECT_DOUBLE_EQ(parse_llama_config(j, kOrigin).rope_theta, 1e6);
  j["rope_theta"] = 5e5;
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "rope_theta", "disagree"});
  // rope_scaling with the default type is plain RoPE.
  j = llama2_config();
  j["rope_scaling"] = {{"type", "default"}};
  EXPECT_DOUBLE_EQ(parse_llama_config(j, kOrigin).rope_theta, 500000.0);
}

TEST(LlamaConfig, UnsupportedRopeScaling) {
  json j = llama2_config();
  j["rope_scaling"] = {{"factor", 8.0}, {"rope_type", "llama3"}};
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "unsupported rope scaling llama3"});
  j["rope_scaling"] = {{"factor", 2.0}, {"type", "linear"}};
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "unsupported rope scaling linear"});
  j = llama2_config();
  j["rope_parameters"] = {{"rope_theta", 5e5}, {"rope_type", "yarn"}};
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "unsupported rope scaling yarn"});
}

TEST(LlamaConfig, Mistral) {
  json j = llama2_config();
  j["architectures"] = {"MistralForCausalLM"};
  j["model_type"] = "mistral";
  j["sliding_window"] = nullptr;
  EXPECT_EQ(parse_llama_config(j, kOrigin).hidden, 4096);
  j["sliding_window"] = 1024;  // shorter than max_position_embeddings 4096
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "sliding_window", "not supported"});
}

TEST(LlamaConfig, UnsupportedArchitectureAndModelType) {
  json j = llama2_config();
  j["architectures"] = {"Qwen2ForCausalLM"};
  expect_error([&] { parse_llama_config(j, kOrigin); },
               {kOrigin, "Qwen2ForCausalLM", "not supported", "LlamaForCausalLM", "MistralForCausalLM"});
  j = llama2_config();
  j["model_type"] = "gemma";
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "model_type", "gemma"});
  j = llama2_config();
  j["hidden_act"] = "gelu";
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "hidden_act", "gelu"});
  j = llama2_config();
  j["attention_bias"] = true;
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "attention_bias"});
  j = llama2_config();
  j["mlp_bias"] = true;
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "mlp_bias"});
  j = llama2_config();
  j["torch_dtype"] = "float8";
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "torch_dtype", "float8"});
}

TEST(LlamaConfig, HeadsNotMultipleOfKvHeads) {
  json j = llama2_config();
  j["num_key_value_heads"] = 5;
  expect_error([&] { parse_llama_config(j, kOrigin); },
               {kOrigin, "num_attention_heads (32)", "num_key_value_heads (5)"});
  j = llama2_config();
  j["num_attention_heads"] = 3;  // 4096 % 3 != 0 and no head_dim
  expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, "head_dim"});
}

TEST(LlamaConfig, MissingRequiredFields) {
  for (const char* field :
       {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}) {
    SCOPED_TRACE(field);
    json j = llama2_config();
    j.erase(field);
    expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, field, "missing"});
  }
}

TEST(LlamaConfig, WrongTypes) {
  const std::vector<std::pair<std::string, json>> cases = {
      {"hidden_size", "4096"},       {"num_hidden_layers", 32.5},  {"vocab_size", -1},
      {"num_key_value_heads", 0},    {"rms_norm_eps", "1e-5"},     {"rope_theta", true},
      {"tie_word_embeddings", "no"}, {"architectures", "LlamaForCausalLM"},
      {"torch_dtype", 16},           {"rope_scaling", "linear"},   {"attention_bias", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.first);
    json j = llama2_config();
    j[c.first] = c.second;
    expect_error([&] { parse_llama_config(j, kOrigin); }, {kOrigin, c.first});
  }
  expect_error([&] { parse_llama_config(json::array(), kOrigin); }, {kOrigin, "object"});
}

TEST(LlamaConfig, LoadErrors) {
  TempDir dir;
  expect_error([&] { load_llama_config(dir.path()); },
               {"no config.json in " + dir.path(), "Hugging Face model directory"});
  expect_error([&] { load_llama_config(dir.file("absent")); }, {dir.file("absent"), "does not exist"});
  test::write_bytes(dir.file("config.json"), "{\"hidden_size\": 4096,");
  expect_error([&] { load_llama_config(dir.path()); }, {dir.file("config.json"), "not valid JSON"});
  test::write_bytes(dir.file("config.json"), llama2_config().dump());
  EXPECT_EQ(load_llama_config(dir.path()).hidden, 4096);
  EXPECT_EQ(load_llama_config(dir.path() + "/").vocab, 32000);
}

}  // namespace
}  // namespace glvq
