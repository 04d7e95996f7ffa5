#pragma once
/// LibTorch forward of a Llama decoder, block by block, so that ranks can run
/// disjoint block ranges and calibration can tap the inputs of every linear.
#include "model/llama_config.h"
#include "model/model_files.h"

#include <ATen/ATen.h>

#include <array>
#include <functional>
#include <string>

namespace glvq {

/// The seven linear layers of a block, in checkpoint naming order.
enum class Linear : int { Q = 0, K, V, O, Gate, Up, Down };
constexpr int kNumLinears = 7;
/// "self_attn.q_proj", ..., "mlp.down_proj".
const char* linear_suffix(Linear l);
std::string linear_tensor_name(int layer, Linear l);  ///< "model.layers.3.mlp.up_proj.weight"

/// Where a block's linears read their input: q/k/v share one input, gate/up one.
enum class Tap : int { AttnIn = 0, OIn, MlpIn, DownIn };
constexpr int kNumTaps = 4;
Tap tap_of(Linear l);
const char* tap_name(Tap t);  ///< "attn_in", "o_in", "mlp_in", "down_in"

struct BlockWeights {
  at::Tensor input_norm, post_norm;       ///< [hidden]
  std::array<at::Tensor, kNumLinears> w;  ///< fp32 [out, in], indexed by Linear
  at::Tensor& operator[](Linear l) { return w[static_cast<int>(l)]; }
  const at::Tensor& operator[](Linear l) const { return w[static_cast<int>(l)]; }
};

/// Reads (and shape-checks) block LAYER's tensors as fp32 on DEVICE. Without
/// LINEARS only the norms are read (the caller supplies the linears, e.g. from
/// a checkpoint), so a 70B block's 1.7 GB of weights are not read in vain.
BlockWeights load_block(ModelFiles& files, const LlamaConfig& cfg, int layer, const at::Device& device,
                        bool linears = true);
/// The shape [out, in] of linear L.
std::vector<int64_t> linear_weight_shape(const LlamaConfig& cfg, Linear l);
/// Names of every tensor block LAYER needs.
std::vector<std::string> block_tensor_names(int layer);
/// Tensors a checkpoint stores as they are: embedding, every norm, lm_head when
/// the model has one (a tied model may omit it).
std::vector<std::string> unquantized_tensor_names(const LlamaConfig& cfg, const ModelFiles& files);

/// Rotary tables: cos/sin [max_len, head_dim] (HF "rotate_half" layout).
struct Rope {
  at::Tensor cos, sin;
};
Rope make_rope(const LlamaConfig& cfg, int64_t max_len, const at::Device& device);

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);
/// x [B, heads, T, head_dim] rotated by positions 0..T-1.
at::Tensor apply_rope(const at::Tensor& x, const Rope& rope);
/// Causal attention with grouped KV heads: q [B, H, T, hd], k/v [B, KV, T, hd].
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

/// Called with the [tokens, in] input of each tap point.
using TapFn = std::function<void(Tap, const at::Tensor&)>;

/// One decoder block: x [B, T, hidden] -> [B, T, hidden].
at::Tensor block_forward(const BlockWeights& w, const LlamaConfig& cfg, const Rope& rope,
                         const at::Tensor& x, const TapFn* tap = nullptr);

/// block_forward's taps up to and including LAST, without computing the rest of the block
/// (quant.sequential's statistics need one tap of a block several times).
void block_forward_until(const BlockWeights& w, const LlamaConfig& cfg, const Rope& rope, const at::Tensor& x,
                         Tap last, const TapFn& tap);

/// Embedding, final norm and lm_head (owned by the first / last pipeline rank).
struct HeadWeights {
  at::Tensor embed;   ///< [vocab, hidden] (first rank)
  at::Tensor norm;    ///< [hidden] (last rank)
  at::Tensor lm_head; ///< [vocab, hidden] (last rank; = embed when tied)
};
HeadWeights load_head(ModelFiles& files, const LlamaConfig& cfg, bool first, bool last,
                      const at::Device& device);

/// Log-probabilities [T-1, vocab] of the next token at each position but the
/// last of one sequence's final hidden states HIDDEN [T, hidden].
at::Tensor next_token_log_probs(const HeadWeights& h, const LlamaConfig& cfg, const at::Tensor& hidden);

/// Sum of NLL (double) of TOKENS [T] (their first excluded) under LOGP [T-1, vocab].
double nll_of(const at::Tensor& logp, const at::Tensor& tokens);

/// Sum of NLL (double) of predicting tokens[:, 1:] from hidden [B, T, hidden];
/// processes a few sequences at a time to bound the logits' memory.
double nll_sum(const HeadWeights& h, const LlamaConfig& cfg, const at::Tensor& hidden,
               const at::Tensor& tokens);

}  // namespace glvq
