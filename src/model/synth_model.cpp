#include "model/synth_model.h"

#include "common/error.h"
#include "common/fs_util.h"
#include "model/safetensors.h"
#include "text/tokenizer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

namespace glvq {
namespace {

namespace fs = std::filesystem;

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t hash_name(uint64_t seed, const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull ^ seed;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return splitmix(h);
}

/// Counter-based stream: the values of row R of a tensor depend only on
/// (tensor seed, R), so threads can fill rows in any order.
struct Stream {
  uint64_t s;
  Stream(uint64_t key, uint64_t index) : s(key ^ (index * 0xD1B54A32D192ED03ull)) { splitmix(s); }
  double uniform() { return (double(splitmix(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  /// A pair of standard normals (Box-Muller).
  void normals(float* a, float* b) {
    const double r = std::sqrt(-2.0 * std::log(uniform())), t = 6.283185307179586 * uniform();
    *a = static_cast<float>(r * std::cos(t));
    *b = static_cast<float>(r * std::sin(t));
  }
  float normal() {
    float a, b;
    normals(&a, &b);
    return a;
  }
};

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

/// How one tensor's values are made: x[r][c] = base * row[r] * col[c] * tail(z).
struct Recipe {
  double base = 1.0;
  double row_spread = 0.0;  ///< log-normal sigma of the per-row scale
  std::vector<float> col;   ///< per-column scale (empty = 1)
  bool heavy_tail = false;
  bool positive_lognormal = false;  ///< norm weights: exp(spread * z), base 1
};

enum class Kind { embed, norm, reads_residual, writes_residual, lm_head };

Kind kind_of(const std::string& name) {
  auto ends = [&](const char* s) {
    const size_t n = std::strlen(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  if (name == "model.embed_tokens.weight") return Kind::embed;
  if (name == "lm_head.weight") return Kind::lm_head;
  if (ends("norm.weight")) return Kind::norm;
  if (ends("o_proj.weight") || ends("down_proj.weight")) return Kind::writes_residual;
  return Kind::reads_residual;
}

Recipe recipe_for(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int>& outliers,
                  uint64_t key) {
  Recipe r;
  const int64_t in = shape.size() == 2 ? shape[1] : shape[0];
  Stream cs(key, ~0ull);  // the column stream, apart from the row streams
  switch (kind_of(name)) {
    case Kind::embed:
      // Small values, but the outlier channels carry large activations into
      // the residual stream (as trained Llamas do): H gets outlier diagonals.
      r.base = 0.02;
      r.col.assign(in, 1.0f);
      for (int c : outliers) r.col[c] = static_cast<float>(6.0 + 6.0 * cs.uniform());
      break;
    case Kind::norm:
      r.positive_lognormal = true;
      r.row_spread = 0.15;
      break;
    case Kind::lm_head:
      r.base = 1.0 / std::sqrt(double(in));
      break;
    case Kind::reads_residual:
    case Kind::writes_residual: {
      r.base = 0.5 / std::sqrt(double(in));
      r.row_spread = 0.3;
      r.heavy_tail = true;
      r.col.resize(in);
      for (auto& v : r.col) v = static_cast<float>(std::exp(0.25 * cs.normal()));
      if (kind_of(name) == Kind::reads_residual) {
        // The same hidden channels in every layer that reads the residual stream, x10..30.
        for (int c : outliers) r.col[c] *= static_cast<float>(10.0 + 20.0 * cs.uniform());
      } else {
        // Layers reading head or MLP features get a few outlier columns of their own.
        const int64_t n = std::max<int64_t>(1, in / 400);
        for (int64_t i = 0; i < n; ++i)
          r.col[static_cast<int64_t>(cs.uniform() * in) % in] *= static_cast<float>(5.0 + 10.0 * cs.uniform());
      }
      break;
    }
  }
  return r;
}

void fill_rows(const Recipe& r, uint64_t key, int64_t row0, int64_t rows, int64_t cols, uint16_t* out) {
  std::vector<float> z(static_cast<size_t>(cols) + 1);
  for (int64_t i = 0; i < rows; ++i) {
    Stream s(key, static_cast<uint64_t>(row0 + i));
    if (r.positive_lognormal) {  // a 1-D norm weight: one value per "row"
      out[i] = to_bf16(static_cast<float>(std::exp(r.row_spread * s.normal())));
      continue;
    }
    const double rs = r.base * (r.row_spread > 0 ? std::exp(r.row_spread * s.normal()) : 1.0);
    for (int64_t c = 0; c < cols; c += 2) s.normals(&z[c], &z[c + 1]);
    uint16_t* o = out + i * cols;
    for (int64_t c = 0; c < cols; ++c) {
      double v = rs * z[c];
      if (!r.col.empty()) v *= r.col[c];
      // One value in 64 is 3x larger: kurtosis well above a Gaussian's, as in trained weights.
      if (r.heavy_tail && (splitmix(s.s) & 63) == 0) v *= 3.0;
      o[c] = to_bf16(static_cast<float>(v));
    }
  }
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

nlohmann::json config_json(const SynthShape& s) {
  return {{"architectures", {"LlamaForCausalLM"}},
          {"model_type", "llama"},
          {"hidden_size", s.hidden},
          {"intermediate_size", s.intermediate},
          {"num_attention_heads", s.heads},
          {"num_key_value_heads", s.kv_heads},
          {"head_dim", s.hidden / s.heads},
          {"num_hidden_layers", s.blocks},
          {"vocab_size", s.vocab},
          {"max_position_embeddings", s.max_positions},
          {"rms_norm_eps", s.rms_eps},
          {"rope_theta", s.rope_theta},
          {"hidden_act", "silu"},
          {"attention_bias", false},
          {"mlp_bias", false},
          {"tie_word_embeddings", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2},
          {"torch_dtype", "bfloat16"},
          {"glvq_synthetic", "random weights from glvq-synth: see docs/SYNTH.md"}};
}

void check_shape(const SynthShape& s) {
  GLVQ_USAGE_CHECK(s.hidden > 0 && s.intermediate > 0 && s.heads > 0 && s.kv_heads > 0 && s.vocab > 0 &&
                       s.blocks > 0,
                   "glvq-synth: hidden, intermediate, heads, kv-heads, vocab and blocks must all be positive");
  GLVQ_USAGE_CHECK(s.hidden % s.heads == 0, "glvq-synth: hidden {} is not a multiple of heads {}", s.hidden,
                   s.heads);
  GLVQ_USAGE_CHECK(s.heads % s.kv_heads == 0, "glvq-synth: heads {} is not a multiple of kv-heads {}", s.heads,
                   s.kv_heads);
  GLVQ_USAGE_CHECK((s.hidden / s.heads) % 2 == 0, "glvq-synth: the head dimension {} must be even (rotary)",
                   s.hidden / s.heads);
}

}  // namespace

SynthShape synth_llama2_70b(int blocks) {
  SynthShape s;
  s.blocks = blocks;
  return s;
}

std::vector<std::string> synth_preset_names() { return {"llama2-70b", "llama2-7b"}; }

SynthShape synth_preset(const std::string& name, int blocks) {
  if (name == "llama2-70b") return synth_llama2_70b(blocks);
  if (name == "llama2-7b") {
    SynthShape s;  // Llama-2-7B: multi-head attention (32 KV heads), 11008-wide MLP
    s.hidden = 4096;
    s.intermediate = 11008;
    s.heads = 32;
    s.kv_heads = 32;
    s.blocks = blocks;
    return s;
  }
  throw UsageError(fmt::format("glvq-synth: unknown --preset '{}': known presets are {}", name,
                               fmt::join(synth_preset_names(), ", ")),
                   __FILE__, __LINE__);
}

std::vector<SynthTensor> synth_tensor_list(const SynthShape& s) {
  const int64_t hd = s.hidden / s.heads, H = s.hidden, I = s.intermediate;
  std::vector<SynthTensor> t;
  t.push_back({"model.embed_tokens.weight", {s.vocab, H}});
  for (int b = 0; b < s.blocks; ++b) {
    const std::string p = fmt::format("model.layers.{}.", b);
    t.push_back({p + "input_layernorm.weight", {H}});
    t.push_back({p + "self_attn.q_proj.weight", {s.heads * hd, H}});
    t.push_back({p + "self_attn.k_proj.weight", {s.kv_heads * hd, H}});
    t.push_back({p + "self_attn.v_proj.weight", {s.kv_heads * hd, H}});
    t.push_back({p + "self_attn.o_proj.weight", {H, s.heads * hd}});
    t.push_back({p + "post_attention_layernorm.weight", {H}});
    t.push_back({p + "mlp.gate_proj.weight", {I, H}});
    t.push_back({p + "mlp.up_proj.weight", {I, H}});
    t.push_back({p + "mlp.down_proj.weight", {H, I}});
  }
  t.push_back({"model.norm.weight", {H}});
  t.push_back({"lm_head.weight", {s.vocab, H}});
  return t;
}

std::vector<int> synth_outlier_channels(const SynthShape& s, uint64_t seed, double fraction) {
  const int n = std::max(1, static_cast<int>(std::lround(fraction * s.hidden)));
  Stream st(hash_name(seed, "outlier channels"), 0);
  std::set<int> picked;
  while (static_cast<int>(picked.size()) < std::min(n, s.hidden))
    picked.insert(static_cast<int>(st.uniform() * s.hidden) % s.hidden);
  return {picked.begin(), picked.end()};
}

void synth_write_model(const std::string& out, const SynthOptions& opt,
                       const std::function<void(uint64_t, uint64_t)>& progress) {
  const SynthShape& s = opt.shape;
  check_shape(s);
  GLVQ_USAGE_CHECK(!out.empty(), "glvq-synth: --out is required");
  GLVQ_USAGE_CHECK(opt.overwrite || !fs::exists(out), "glvq-synth: {} exists; remove it or pass --force", out);
  const std::string tok_model = opt.tokenizer_from + "/tokenizer.model";
  GLVQ_CHECK(file_exists(tok_model), "glvq-synth: {} is missing: --tokenizer-from must name a directory with a "
             "sentencepiece tokenizer.model", tok_model);
  const int tok_vocab = Tokenizer(tok_model).vocab_size();
  GLVQ_USAGE_CHECK(tok_vocab <= s.vocab, "glvq-synth: the tokenizer {} has {} pieces, more than --vocab {}: its ids "
                   "would not fit the embedding", tok_model, tok_vocab, s.vocab);

  const std::vector<SynthTensor> tensors = synth_tensor_list(s);
  const std::vector<int> outliers = synth_outlier_channels(s, opt.seed, opt.outlier_fraction);
  // Shards: consecutive tensors up to shard_bytes each (at least one tensor per shard).
  std::vector<std::vector<size_t>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t n = static_cast<uint64_t>(numel(tensors[i].shape)) * 2;
    if (!shards.back().empty() && in_shard + n > opt.shard_bytes) shards.emplace_back(), in_shard = 0;
    shards.back().push_back(i);
    in_shard += n;
    total += n;
  }

  const fs::path final_dir = fs::absolute(out);
  const std::string tmp = final_dir.string() + fmt::format(".tmp-{}", ::getpid());
  remove_tree(tmp);
  ensure_dir(tmp);
  const int threads = opt.threads > 0 ? opt.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  uint64_t done = 0;
  try {
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t sh = 0; sh < shards.size(); ++sh) {
      const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", sh + 1, shards.size());
      std::vector<TensorSpec> specs;
      for (size_t i : shards[sh]) {
        specs.push_back({tensors[i].name, DType::BF16, tensors[i].shape});
        weight_map[tensors[i].name] = file;
      }
      write_safetensors_streamed(tmp + "/" + file, specs, {{"format", "pt"}}, [&](size_t k, const ByteSink& sink) {
        const SynthTensor& t = tensors[shards[sh][k]];
        const uint64_t key = hash_name(opt.seed, t.name);
        const Recipe r = recipe_for(t.name, t.shape, outliers, key);
        const int64_t rows = t.shape[0];
        const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
        // Pieces of ~32 MB, each filled by all threads.
        const int64_t piece = std::max<int64_t>(1, (int64_t(16) << 20) / cols);
        std::vector<uint16_t> buf(static_cast<size_t>(std::min(piece, rows) * cols));
        for (int64_t r0 = 0; r0 < rows; r0 += piece) {
          const int64_t n = std::min(piece, rows - r0);
          if (cols == 1) {
            fill_rows(r, key, r0, n, 1, buf.data());  // 1-D: one value per row
          } else {
            std::vector<std::thread> pool;
            const int64_t per = (n + threads - 1) / threads;
            for (int64_t a = 0; a < n; a += per)
              pool.emplace_back(fill_rows, std::cref(r), key, r0 + a, std::min(per, n - a), cols,
                                buf.data() + a * cols);
            for (auto& th : pool) th.join();
          }
          sink(buf.data(), static_cast<size_t>(n * cols) * 2);
          done += static_cast<uint64_t>(n * cols) * 2;
          if (progress) progress(done, total);
        }
      });
    }
    const nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    write_file_atomic(tmp + "/model.safetensors.index.json", index.dump(2) + "\n");
    write_file_atomic(tmp + "/config.json", config_json(s).dump(2) + "\n");
    write_file_atomic(tmp + "/tokenizer.model", read_file(tok_model));
    if (file_exists(opt.tokenizer_from + "/tokenizer_config.json"))
      write_file_atomic(tmp + "/tokenizer_config.json", read_file(opt.tokenizer_from + "/tokenizer_config.json"));
    GLVQ_CHECK(remove_tree(final_dir.string()), "cannot replace {}: {}", final_dir.string(), std::strerror(errno));
    fs::rename(tmp, final_dir);
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
}

}  // namespace glvq
