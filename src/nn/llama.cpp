#include "nn/llama.h"

#include "common/error.h"
#include "nn/tensor_io.h"

#include <cmath>

namespace glvq {

const char* linear_suffix(Linear l) {
  static const char* names[kNumLinears] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                           "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                           "mlp.down_proj"};
  return names[static_cast<int>(l)];
}

std::string linear_tensor_name(int layer, Linear l) {
  return fmt::format("model.layers.{}.{}.weight", layer, linear_suffix(l));
}

Tap tap_of(Linear l) {
  switch (l) {
    case Linear::Q: case Linear::K: case Linear::V: return Tap::AttnIn;
    case Linear::O: return Tap::OIn;
    case Linear::Gate: case Linear::Up: return Tap::MlpIn;
    case Linear::Down: return Tap::DownIn;
  }
  GLVQ_ASSERT(false);
  return Tap::AttnIn;
}

const char* tap_name(Tap t) {
  static const char* names[kNumTaps] = {"attn_in", "o_in", "mlp_in", "down_in"};
  return names[static_cast<int>(t)];
}

std::vector<std::string> block_tensor_names(int layer) {
  std::vector<std::string> names = {fmt::format("model.layers.{}.input_layernorm.weight", layer),
                                    fmt::format("model.layers.{}.post_attention_layernorm.weight", layer)};
  for (int i = 0; i < kNumLinears; ++i) names.push_back(linear_tensor_name(layer, static_cast<Linear>(i)));
  return names;
}

std::vector<std::string> unquantized_tensor_names(const LlamaConfig& c, const ModelFiles& files) {
  std::vector<std::string> names = {"model.embed_tokens.weight"};
  for (int l = 0; l < c.n_layers; ++l) {
    names.push_back(fmt::format("model.layers.{}.input_layernorm.weight", l));
    names.push_back(fmt::format("model.layers.{}.post_attention_layernorm.weight", l));
  }
  names.push_back("model.norm.weight");
  if (files.has("lm_head.weight")) names.push_back("lm_head.weight");
  return names;
}

std::vector<int64_t> linear_weight_shape(const LlamaConfig& c, Linear l) {
  const int64_t h = c.hidden, q = int64_t(c.n_heads) * c.head_dim, kv = int64_t(c.n_kv_heads) * c.head_dim;
  switch (l) {
    case Linear::Q: return {q, h};
    case Linear::K: case Linear::V: return {kv, h};
    case Linear::O: return {h, q};
    case Linear::Gate: case Linear::Up: return {c.intermediate, h};
    case Linear::Down: return {h, c.intermediate};
  }
  return {};
}

namespace {
at::Tensor load_checked(ModelFiles& files, const std::string& name, std::vector<int64_t> shape,
                        const at::Device& device) {
  const TensorView& v = files.get(name);
  check_shape(v, std::move(shape));
  return to_float_tensor(v, device);
}
}  // namespace

BlockWeights load_block(ModelFiles& files, const LlamaConfig& cfg, int layer, const at::Device& device,
                        bool linears) {
  GLVQ_CHECK(layer >= 0 && layer < cfg.n_layers, "block {} does not exist: the model has {} blocks", layer,
             cfg.n_layers);
  BlockWeights b;
  auto names = block_tensor_names(layer);
  b.input_norm = load_checked(files, names[0], {cfg.hidden}, device);
  b.post_norm = load_checked(files, names[1], {cfg.hidden}, device);
  for (int i = 0; i < kNumLinears && linears; ++i)
    b.w[i] = load_checked(files, names[2 + i], linear_weight_shape(cfg, static_cast<Linear>(i)), device);
  return b;
}

HeadWeights load_head(ModelFiles& files, const LlamaConfig& cfg, bool first, bool last, const at::Device& device) {
  HeadWeights h;
  const std::vector<int64_t> emb_shape = {cfg.vocab, cfg.hidden};
  const bool tied = cfg.tie_word_embeddings || !files.has("lm_head.weight");
  if (first || (last && tied)) h.embed = load_checked(files, "model.embed_tokens.weight", emb_shape, device);
  if (last) {
    h.norm = load_checked(files, "model.norm.weight", {cfg.hidden}, device);
    h.lm_head = tied ? h.embed : load_checked(files, "lm_head.weight", emb_shape, device);
  }
  return h;
}

Rope make_rope(const LlamaConfig& cfg, int64_t max_len, const at::Device& device) {
  const int64_t hd = cfg.head_dim;
  // Tables in double then rounded once: matches HF's fp32 tables to the last bit or two.
  auto opts = at::TensorOptions().dtype(at::kDouble);
  at::Tensor inv_freq = 1.0 / at::pow(cfg.rope_theta, at::arange(0, hd, 2, opts) / double(hd));
  at::Tensor pos = at::arange(max_len, opts);
  at::Tensor freqs = at::outer(pos, inv_freq);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos().to(device, at::kFloat), emb.sin().to(device, at::kFloat)};
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  at::Tensor var = x.pow(2).mean(-1, /*keepdim=*/true);
  return x * at::rsqrt(var + eps) * w;
}

at::Tensor apply_rope(const at::Tensor& x, const Rope& rope) {
  const int64_t T = x.size(2), half = x.size(3) / 2;
  GLVQ_CHECK(T <= rope.cos.size(0), "sequence of {} tokens is longer than the rotary table ({})", T,
             rope.cos.size(0));
  at::Tensor cos = rope.cos.narrow(0, 0, T), sin = rope.sin.narrow(0, 0, T);
  at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  return x * cos + rotated * sin;
}

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3), KV = k.size(1);
  const int64_t rep = H / KV;
  // Query heads of one KV group are folded into the sequence dimension so the
  // shared K/V are used without being copied rep times.
  at::Tensor qg = q.reshape({B, KV, rep * T, hd});
  at::Tensor scores = at::matmul(qg, k.transpose(-1, -2)) / std::sqrt(double(hd));  // [B, KV, rep*T, T]
  scores = scores.view({B, KV, rep, T, T});
  at::Tensor mask = at::ones({T, T}, q.options().dtype(at::kBool)).triu(1);
  scores.masked_fill_(mask, -std::numeric_limits<float>::infinity());
  at::Tensor p = at::softmax(scores, -1).view({B, KV, rep * T, T});
  return at::matmul(p, v).view({B, H, T, hd});
}

namespace {

// The block, or with LAST its part up to the tap LAST (then the result is undefined).
at::Tensor block_forward_impl(const BlockWeights& w, const LlamaConfig& cfg, const Rope& rope, const at::Tensor& x,
                              const TapFn* tap, const Tap* last) {
  const int64_t B = x.size(0), T = x.size(1), hd = cfg.head_dim;
  // true once the tap LAST has been emitted
  auto emit = [&](Tap t, const at::Tensor& in) {
    if (tap) (*tap)(t, in.reshape({-1, in.size(-1)}));
    return last && *last == t;
  };
  at::Tensor h = rms_norm(x, w.input_norm, cfg.rms_eps);
  if (emit(Tap::AttnIn, h)) return {};
  at::Tensor q = at::linear(h, w[Linear::Q]).view({B, T, cfg.n_heads, hd}).transpose(1, 2);
  at::Tensor k = at::linear(h, w[Linear::K]).view({B, T, cfg.n_kv_heads, hd}).transpose(1, 2);
  at::Tensor v = at::linear(h, w[Linear::V]).view({B, T, cfg.n_kv_heads, hd}).transpose(1, 2);
  q = apply_rope(q, rope);
  k = apply_rope(k, rope);
  at::Tensor a = causal_attention(q.contiguous(), k.contiguous(), v.contiguous());
  a = a.transpose(1, 2).reshape({B, T, int64_t(cfg.n_heads) * hd});
  if (emit(Tap::OIn, a)) return {};
  at::Tensor x2 = x + at::linear(a, w[Linear::O]);
  at::Tensor m = rms_norm(x2, w.post_norm, cfg.rms_eps);
  if (emit(Tap::MlpIn, m)) return {};
  at::Tensor act = at::silu(at::linear(m, w[Linear::Gate])) * at::linear(m, w[Linear::Up]);
  if (emit(Tap::DownIn, act)) return {};
  return x2 + at::linear(act, w[Linear::Down]);
}

}  // namespace

at::Tensor block_forward(const BlockWeights& w, const LlamaConfig& cfg, const Rope& rope, const at::Tensor& x,
                         const TapFn* tap) {
  return block_forward_impl(w, cfg, rope, x, tap, nullptr);
}

void block_forward_until(const BlockWeights& w, const LlamaConfig& cfg, const Rope& rope, const at::Tensor& x,
                         Tap last, const TapFn& tap) {
  block_forward_impl(w, cfg, rope, x, &tap, &last);
}

at::Tensor next_token_log_probs(const HeadWeights& hw, const LlamaConfig& cfg, const at::Tensor& hidden) {
  at::Tensor h = rms_norm(hidden, hw.norm, cfg.rms_eps);
  at::Tensor logits = at::linear(h.narrow(0, 0, h.size(0) - 1), hw.lm_head);  // [T-1, V]
  return at::log_softmax(logits, -1);
}

double nll_of(const at::Tensor& logp, const at::Tensor& tokens) {
  at::Tensor target = tokens.narrow(0, 1, tokens.size(0) - 1).to(logp.device(), at::kLong);
  return -logp.gather(1, target.unsqueeze(1)).to(at::kDouble).sum().item<double>();
}

double nll_sum(const HeadWeights& hw, const LlamaConfig& cfg, const at::Tensor& hidden, const at::Tensor& tokens) {
  double total = 0;
  for (int64_t b = 0; b < hidden.size(0); ++b) total += nll_of(next_token_log_probs(hw, cfg, hidden[b]), tokens[b]);
  return total;
}

}  // namespace glvq
