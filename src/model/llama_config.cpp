#include "model/llama_config.h"

#include "common/error.h"

#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <sstream>

namespace glvq {
namespace {

using json = nlohmann::json;

bool present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

// A positive integer field; REQUIRED fields may not be absent or null.
int get_int(const json& j, const std::string& origin, const char* key, bool required, int dflt) {
  if (!present(j, key)) {
    GLVQ_CHECK(!required, "{}: required field '{}' is missing: not a Llama config.json", origin, key);
    return dflt;
  }
  const json& v = j[key];
  GLVQ_CHECK(v.is_number_integer(), "{}: field '{}' is {}, expected a positive integer", origin, key,
             v.dump());
  // Parsed JSON stores non-negative integers as unsigned, built JSON as signed.
  const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() >= 1 && v.get<uint64_t>() <= INT32_MAX
                                               : v.get<int64_t>() >= 1 && v.get<int64_t>() <= INT32_MAX;
  GLVQ_CHECK(in_range,
             "{}: field '{}' is {}, expected a positive integer below 2^31", origin, key, v.dump());
  return v.get<int>();
}

double get_positive_number(const std::string& origin, const std::string& key_path, const json& v) {
  GLVQ_CHECK(v.is_number(), "{}: field '{}' is {}, expected a number", origin, key_path, v.dump());
  const double d = v.get<double>();
  GLVQ_CHECK(std::isfinite(d) && d > 0, "{}: field '{}' is {}, expected a positive number", origin,
             key_path, v.dump());
  return d;
}

bool get_bool(const json& j, const std::string& origin, const char* key, bool dflt) {
  if (!present(j, key)) return dflt;
  const json& v = j[key];
  GLVQ_CHECK(v.is_boolean(), "{}: field '{}' is {}, expected true or false", origin, key, v.dump());
  return v.get<bool>();
}

std::string get_string(const json& j, const std::string& origin, const char* key) {
  const json& v = j[key];
  GLVQ_CHECK(v.is_string(), "{}: field '{}' is {}, expected a string", origin, key, v.dump());
  return v.get<std::string>();
}

// RoPE variants other than the plain one (linear, dynamic, yarn, llama3, ...)
// change the frequencies; the forward pass implements only the plain one.
void check_rope_type(const json& r, const std::string& origin, const char* field) {
  if (r.is_null()) return;
  GLVQ_CHECK(r.is_object(), "{}: field '{}' is {}, expected an object or null", origin, field, r.dump());
  for (const char* key : {"rope_type", "type"}) {
    if (!present(r, key)) continue;
    const json& t = r[key];
    GLVQ_CHECK(t.is_string(), "{}: field '{}.{}' is {}, expected a string", origin, field, key,
               t.dump());
    const std::string s = t.get<std::string>();
    GLVQ_CHECK(s == "default",
               "{}: unsupported rope scaling {} ({}.{}); only plain RoPE (rope_type \"default\") is "
               "implemented",
               origin, s, field, key);
  }
}

double resolve_rope_theta(const json& j, const std::string& origin) {
  if (j.contains("rope_scaling")) check_rope_type(j["rope_scaling"], origin, "rope_scaling");
  bool have_top = present(j, "rope_theta");
  double top = have_top ? get_positive_number(origin, "rope_theta", j["rope_theta"]) : 0.0;
  if (present(j, "rope_parameters")) {
    const json& rp = j["rope_parameters"];
    check_rope_type(rp, origin, "rope_parameters");
    if (present(rp, "rope_theta")) {
      const double nested =
          get_positive_number(origin, "rope_parameters.rope_theta", rp["rope_theta"]);
      GLVQ_CHECK(!have_top || top == nested,
                 "{}: rope_theta ({}) and rope_parameters.rope_theta ({}) disagree: fix the config",
                 origin, top, nested);
      return nested;
    }
  }
  return have_top ? top : 10000.0;
}

bool contains_string(const std::vector<std::string>& v, const char* s) {
  for (const std::string& x : v) {
    if (x == s) return true;
  }
  return false;
}

}  // namespace

LlamaConfig parse_llama_config(const json& j, const std::string& origin) {
  GLVQ_CHECK(j.is_object(), "{}: expected a JSON object, got a JSON {}", origin, j.type_name());
  LlamaConfig c;

  bool mistral = false;
  if (present(j, "architectures")) {
    const json& a = j["architectures"];
    GLVQ_CHECK(a.is_array(), "{}: field 'architectures' is {}, expected an array of strings", origin,
               a.dump());
    std::vector<std::string> archs;
    for (const json& x : a) {
      GLVQ_CHECK(x.is_string(), "{}: field 'architectures' holds {}, expected strings", origin, x.dump());
      archs.push_back(x.get<std::string>());
    }
    const bool llama = contains_string(archs, "LlamaForCausalLM");
    mistral = !llama && contains_string(archs, "MistralForCausalLM");
    GLVQ_CHECK(llama || mistral,
               "{}: architecture {} is not supported; supported: LlamaForCausalLM, "
               "MistralForCausalLM (without sliding-window attention)",
               origin, a.dump());
  }
  if (present(j, "model_type")) {
    const std::string mt = get_string(j, origin, "model_type");
    GLVQ_CHECK(mt == "llama" || mt == "mistral",
               "{}: model_type \"{}\" is not supported; supported: llama, mistral", origin, mt);
    mistral = mistral || mt == "mistral";
  }
  if (present(j, "hidden_act")) {
    const std::string act = get_string(j, origin, "hidden_act");
    GLVQ_CHECK(act == "silu", "{}: hidden_act \"{}\" is not supported; only \"silu\" is implemented",
               origin, act);
  }
  GLVQ_CHECK(!get_bool(j, origin, "attention_bias", false),
             "{}: attention_bias = true is not supported (q/k/v/o projections with bias)", origin);
  GLVQ_CHECK(!get_bool(j, origin, "mlp_bias", false),
             "{}: mlp_bias = true is not supported (MLP projections with bias)", origin);

  c.rope_theta = resolve_rope_theta(j, origin);

  c.hidden = get_int(j, origin, "hidden_size", true, 0);
  c.intermediate = get_int(j, origin, "intermediate_size", true, 0);
  c.n_layers = get_int(j, origin, "num_hidden_layers", true, 0);
  c.n_heads = get_int(j, origin, "num_attention_heads", true, 0);
  c.vocab = get_int(j, origin, "vocab_size", true, 0);
  c.n_kv_heads = get_int(j, origin, "num_key_value_heads", false, c.n_heads);
  c.max_positions = get_int(j, origin, "max_position_embeddings", false, 2048);
  GLVQ_CHECK(c.n_kv_heads <= c.n_heads && c.n_heads % c.n_kv_heads == 0,
             "{}: num_attention_heads ({}) is not a multiple of num_key_value_heads ({})", origin,
             c.n_heads, c.n_kv_heads);

  if (present(j, "head_dim")) {
    c.head_dim = get_int(j, origin, "head_dim", true, 0);
  } else {
    GLVQ_CHECK(c.hidden % c.n_heads == 0,
               "{}: hidden_size ({}) is not a multiple of num_attention_heads ({}) and there is no "
               "head_dim field",
               origin, c.hidden, c.n_heads);
    c.head_dim = c.hidden / c.n_heads;
  }
  GLVQ_CHECK(c.head_dim % 2 == 0, "{}: head_dim {} is odd: RoPE rotates pairs of dimensions", origin,
             c.head_dim);

  if (mistral && present(j, "sliding_window")) {
    const int window = get_int(j, origin, "sliding_window", true, 0);
    // A window as long as the context is ordinary causal attention.
    GLVQ_CHECK(window >= c.max_positions,
               "{}: sliding-window attention (sliding_window = {} < max_position_embeddings = {}) is "
               "not supported",
               origin, window, c.max_positions);
  }

  if (present(j, "rms_norm_eps")) {
    c.rms_eps = get_positive_number(origin, "rms_norm_eps", j["rms_norm_eps"]);
  }
  c.tie_word_embeddings = get_bool(j, origin, "tie_word_embeddings", false);

  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  const char* dtype_key = present(j, "dtype")         ? "dtype"
                          : present(j, "torch_dtype") ? "torch_dtype"
                                                      : nullptr;
  if (dtype_key) {
    c.dtype = get_string(j, origin, dtype_key);
    GLVQ_CHECK(c.dtype == "bfloat16" || c.dtype == "float16" || c.dtype == "float32",
               "{}: {} \"{}\" is not supported; expected bfloat16, float16 or float32", origin,
               dtype_key, c.dtype);
  }
  c.raw = j;
  return c;
}

LlamaConfig load_llama_config(const std::string& dir) {
  struct stat st {};
  GLVQ_CHECK(::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode),
             "model directory {} does not exist or is not a directory", dir);
  const std::string path = dir + (dir.empty() || dir.back() == '/' ? "" : "/") + "config.json";
  std::ifstream in(path, std::ios::binary);
  GLVQ_CHECK(::stat(path.c_str(), &st) == 0,
             "no config.json in {}: is this a Hugging Face model directory?", dir);
  GLVQ_CHECK(in.good(), "{}: cannot open config.json for reading", path);
  std::stringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = json::parse(ss.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for an overflowing number (found by fuzzing)
    GLVQ_FAIL("{}: not valid JSON ({})", path, e.what());
  }
  return parse_llama_config(j, path);
}

}  // namespace glvq
