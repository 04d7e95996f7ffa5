#include "gen/synth_checkpoint.h"
#include "common/splitmix.h"

#include "ckpt/checkpoint.h"
#include "common/error.h"
#include "nn/llama.h"
#include "quant/glvq_codebook.h"
#include "quant/glvq_codec.h"
#include "quant/glvq_hadamard.h"

#include <cmath>
#include <cstring>

namespace glvq {
namespace {


/// Random bytes: every b-bit value is a valid box code and every 8b-bit string a valid
/// shaped sub-code, so any bytes decode.
void fill_random(uint8_t* p, int64_t n, uint64_t seed) {
  uint64_t s = seed;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t r = splitmix64(s);
    std::memcpy(p + i, &r, 8);
  }
  for (uint64_t r = splitmix64(s); i < n; ++i, r >>= 8) p[i] = static_cast<uint8_t>(r);
}

QuantizedLinear synth_layer(int64_t out, int64_t in, const SynthCheckpointOptions& o, uint64_t seed) {
  GlvqLayout L;
  L.out = out;
  L.in = in;
  L.dim = o.dim;
  L.group_size = o.group_size;
  L.code = o.shaped ? GlvqCode::shaped : GlvqCode::box;
  const int64_t B = L.groups(), d = o.dim;
  QuantizedLinear q;
  q.method = "glvq";
  q.out = out;
  q.in = in;
  at::Tensor bits = at::full({B}, o.bits, at::TensorOptions().dtype(at::kByte));
  const std::vector<int64_t> off = glvq_group_offsets(L, bits.data_ptr<uint8_t>());
  at::Tensor codes = at::empty({off.back()}, at::TensorOptions().dtype(at::kByte));
  fill_random(codes.data_ptr<uint8_t>(), codes.numel(), seed);
  at::manual_seed(seed);
  const at::Tensor G = (at::eye(d).expand({B, d, d}) + 0.05 * at::randn({B, d, d})).to(at::kHalf).contiguous();
  // rms of t = z + 1/2 over 2^b equally likely levels: sqrt((4^b - 1) / 12); the shaped
  // books are made for unit Gaussian data (rms ~1); weights of rms ~0.02
  const double t_rms = o.shaped ? 1.0 : std::sqrt((std::pow(4.0, o.bits) - 1) / 12.0);
  q.arrays["codes"] = codes;
  q.arrays["G"] = G;
  q.arrays["mu"] = at::zeros({B}, at::TensorOptions().dtype(at::kHalf));
  q.arrays["scale"] = at::full({B}, 0.02 / t_rms, at::TensorOptions().dtype(at::kHalf));
  q.arrays["bits"] = bits;
  q.arrays["signs_in"] = glvq_pack_signs(glvq_random_signs(in, seed + 1));
  q.arrays["signs_out"] = glvq_pack_signs(glvq_random_signs(out, seed + 2));
  q.attrs = {{"dim", double(d)}, {"group_size", double(o.group_size)}, {"incoherence", 1.0}, {"seed", double(seed)},
             {"code", double(static_cast<int>(L.code))}};
  if (o.shaped) q.attrs["codebook"] = double(kShapedBookVersion);
  return q;
}

}  // namespace

void write_synth_checkpoint(const std::string& path, const SynthCheckpointOptions& o,
                            const std::function<void(int, int)>& progress) {
  const SynthShape& s = o.shape;
  GLVQ_USAGE_CHECK(o.bits >= 1 && o.bits <= 8, "--bits {} must be 1..8", o.bits);
  GLVQ_USAGE_CHECK(o.dim >= 1 && o.group_size % o.dim == 0 && o.group_size % 16 == 0,
                   "--dim {} must divide --group-size {}, a multiple of 16", o.dim, o.group_size);
  GLVQ_USAGE_CHECK(!o.shaped || o.dim % 8 == 0, "--code shaped needs --dim a multiple of 8, not {}", o.dim);
  GLVQ_USAGE_CHECK(s.hidden % s.heads == 0 && s.heads % s.kv_heads == 0, "heads {} / kv heads {} do not fit hidden {}",
                   s.heads, s.kv_heads, s.hidden);
  const nlohmann::json mc = {{"architectures", {"LlamaForCausalLM"}},
                             {"model_type", "llama"},
                             {"hidden_size", s.hidden},
                             {"intermediate_size", s.intermediate},
                             {"num_hidden_layers", s.blocks},
                             {"num_attention_heads", s.heads},
                             {"num_key_value_heads", s.kv_heads},
                             {"vocab_size", s.vocab},
                             {"max_position_embeddings", s.max_positions},
                             {"rope_theta", s.rope_theta},
                             {"rms_norm_eps", s.rms_eps},
                             {"tie_word_embeddings", false},
                             {"torch_dtype", "float16"},
                             {"hidden_act", "silu"}};
  const LlamaConfig cfg = parse_llama_config(mc, "synthetic config");
  for (int64_t n : {int64_t(cfg.hidden), int64_t(cfg.intermediate), int64_t(cfg.n_heads) * cfg.head_dim})
    GLVQ_USAGE_CHECK(n % o.group_size == 0, "--group-size {} does not divide the layer width {}", o.group_size, n);
  CheckpointWriter w(path);
  const int total = cfg.n_layers * kNumLinears;
  for (int b = 0; b < cfg.n_layers; ++b) {
    for (int l = 0; l < kNumLinears; ++l) {
      const auto shape = linear_weight_shape(cfg, static_cast<Linear>(l));
      w.add_layer(linear_tensor_name(b, static_cast<Linear>(l)),
                  synth_layer(shape[0], shape[1], o, o.seed * 1000003 + uint64_t(b) * kNumLinears + l));
      if (progress) progress(b * kNumLinears + l + 1, total);
    }
    w.add_tensor(fmt::format("model.layers.{}.input_layernorm.weight", b), at::ones({s.hidden}, at::kHalf));
    w.add_tensor(fmt::format("model.layers.{}.post_attention_layernorm.weight", b), at::ones({s.hidden}, at::kHalf));
  }
  at::manual_seed(o.seed);
  w.add_tensor("model.embed_tokens.weight", (0.02 * at::randn({s.vocab, s.hidden})).to(at::kHalf));
  w.add_tensor("lm_head.weight", (0.02 * at::randn({s.vocab, s.hidden})).to(at::kHalf));
  w.add_tensor("model.norm.weight", at::ones({s.hidden}, at::kHalf));
  CheckpointInfo info;
  info.model_config = mc.dump(2);
  info.config = nlohmann::json{{"model", {{"path", ""}}}, {"synthetic", true}}.dump();
  info.method = "glvq";
  info.provenance = {{"synthetic", "random codes for speed measurements only"}};
  w.finish(info);
}

}  // namespace glvq
