#pragma once
/// A Llama-family config.json, with the variants found in the wild resolved.
#include <nlohmann/json.hpp>

#include <string>

namespace glvq {

struct LlamaConfig {
  int hidden = 0;
  int intermediate = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;         ///< num_key_value_heads, defaults to n_heads (MHA); 1 = MQA
  int head_dim = 0;           ///< given, or hidden / n_heads
  int vocab = 0;
  int max_positions = 0;
  double rope_theta = 10000;  ///< top-level rope_theta or rope_parameters.rope_theta
  double rms_eps = 1e-6;
  bool tie_word_embeddings = false;
  std::string dtype = "float32";  ///< torch_dtype or dtype ("bfloat16", "float16", "float32")
  nlohmann::json raw;             ///< the file as read
};

/// Reads DIR/config.json; throws glvq::Error naming the file and the missing or
/// invalid field, or an unsupported architecture / rope scaling.
LlamaConfig load_llama_config(const std::string& dir);
LlamaConfig parse_llama_config(const nlohmann::json& j, const std::string& origin);

}  // namespace glvq
