#pragma once
/// The decoder forward of glvq-generate with a KV cache, one code for the CPU
/// and the GPU: linears are GenLinear objects (dense weights on the CPU; on the
/// GPU the fused GLVQ decode-GEMV or dense fp16), everything else is LibTorch.
/// Positions come as a tensor, so a decode step has static shapes and can be
/// captured in a CUDA graph (attention then reads the whole cache, masked).
#include "model/llama_config.h"
#include "nn/llama.h"

#include <ATen/ATen.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

namespace glvq {

/// y = x W^T for x [rows, in] in the activation dtype; y [rows, out], same dtype.
class GenLinear {
 public:
  virtual ~GenLinear() = default;
  virtual at::Tensor forward(const at::Tensor& x) = 0;
  /// Bytes one call reads from memory for the weight (as this path stores it).
  virtual int64_t weight_bytes() const = 0;
  /// What runs: "dense fp32", "dense fp16", "glvq fused".
  virtual std::string kind() const = 0;
};

/// at::linear on a dense weight [out, in] (fp32 on the CPU, fp16 + cuBLAS on the GPU).
class DenseLinear : public GenLinear {
 public:
  explicit DenseLinear(at::Tensor w) : w_(std::move(w)) {}
  at::Tensor forward(const at::Tensor& x) override { return at::linear(x, w_); }
  int64_t weight_bytes() const override { return w_.numel() * static_cast<int64_t>(w_.element_size()); }
  std::string kind() const override { return w_.scalar_type() == at::kHalf ? "dense fp16" : "dense fp32"; }

 private:
  at::Tensor w_;
};

struct GenBlock {
  at::Tensor input_norm, post_norm;  ///< fp32 [hidden] on the device
  std::array<std::unique_ptr<GenLinear>, kNumLinears> lin;
};

struct GenWeights {
  LlamaConfig cfg;
  at::Device device = at::kCPU;
  at::ScalarType act = at::kFloat;  ///< activations, KV cache, embedding and lm_head dtype
  at::Tensor embed;                 ///< [vocab, hidden] act
  at::Tensor norm;                  ///< [hidden] fp32
  at::Tensor lm_head;               ///< [vocab, hidden] act
  std::vector<GenBlock> blocks;
  Rope rope;  ///< fp32 tables for max_positions
  /// Bytes a decode step reads for weights: every linear, lm_head, the norms and one embedding row.
  int64_t step_weight_bytes() const;
};

/// K/V of every block: [batch, kv_heads, max_len, head_dim] in the activation dtype.
struct KvCache {
  std::vector<at::Tensor> k, v;
  int64_t batch = 0, max_len = 0;
  void reset(const GenWeights& w, int64_t batch, int64_t max_len);
  /// Bytes of K and V that attention reads for LEN cached positions (all blocks, all sequences).
  int64_t read_bytes(const GenWeights& w, int64_t len) const;
};

/// Runs TOKENS [batch, n] (int64, on the device) at positions QPOS [n] (int64,
/// on the device; each below KV_LEN <= cache.max_len): writes their K/V into the
/// cache, attends to cache positions 0..KV_LEN-1 causally (key j visible to
/// query i when j <= QPOS[i]), and returns fp32 logits [batch, n, vocab]
/// (ALL_LOGITS) or [batch, vocab] for the last position, on the device.
/// Issues no host synchronisation (capturable in a CUDA graph).
at::Tensor gen_forward(const GenWeights& w, KvCache& cache, const at::Tensor& tokens, const at::Tensor& qpos,
                       int64_t kv_len, bool all_logits);

}  // namespace glvq
