// The decode step on the fused ops: the residual stream x stays fp32 [B, hidden]; each
// linear's fp16 output is added into it by the next norm's kernel (the down projection's
// by the next block's input norm, the last one's by the final norm).
#include "gen/cuda/cuda_step.h"

#include "common/error.h"
#include "gen_step_ops.cuh"

#include <c10/cuda/CUDAStream.h>

namespace glvq {
namespace {

const __half* hp(const at::Tensor& t) { return reinterpret_cast<const __half*>(t.data_ptr<at::Half>()); }
__half* hp_mut(at::Tensor& t) { return reinterpret_cast<__half*>(t.data_ptr<at::Half>()); }

/// BLOCK: the transformer block, -1 for the final norm.
void check_launch(cudaError_t e, const char* what, int64_t block) {
  if (e == cudaSuccess) return;
  GLVQ_FAIL("decode step, {}: the {} kernel failed: {}", block < 0 ? "final norm" : fmt::format("block {}", block),
            what, cudaGetErrorString(e));
}

/// A linear's output as the fused ops read it: fp16 [rows, out], contiguous.
at::Tensor run_linear(const GenBlock& blk, Linear l, const at::Tensor& in) {
  at::Tensor y = blk.lin[int(l)]->forward(in).contiguous();
  GLVQ_ASSERT(y.scalar_type() == at::kHalf && y.dim() == 2 && y.size(0) == in.size(0));
  return y;
}

/// h = rmsnorm(x (+= pending, when defined)) with weight NORM.
void norm_into(at::Tensor& x, const at::Tensor& pending, const at::Tensor& norm, at::Tensor& h, float eps,
               cudaStream_t stream, int64_t block) {
  const int rows = int(x.size(0)), n = int(x.size(1));
  GLVQ_ASSERT(norm.scalar_type() == at::kFloat && norm.is_contiguous() && norm.numel() == n);
  if (pending.defined()) {
    GLVQ_ASSERT(pending.sizes() == x.sizes());
    check_launch(gen_add_rmsnorm_launch(x.data_ptr<float>(), hp(pending), norm.data_ptr<float>(), hp_mut(h), rows, n,
                                        eps, stream),
                 "add + rmsnorm", block);
  } else {
    check_launch(gen_rmsnorm_launch(x.data_ptr<float>(), norm.data_ptr<float>(), hp_mut(h), rows, n, eps, stream),
                 "rmsnorm", block);
  }
}

}  // namespace

bool cuda_decode_step_fused(const GenWeights& w) {
  const LlamaConfig& c = w.cfg;
  return w.device.is_cuda() && w.act == at::kHalf && c.head_dim % 2 == 0 && c.head_dim <= kGenMaxHeadDim &&
         c.n_kv_heads >= 1 && c.n_heads % c.n_kv_heads == 0;
}

at::Tensor cuda_decode_step(const GenWeights& w, KvCache& cache, const at::Tensor& tokens, const at::Tensor& qpos) {
  if (!cuda_decode_step_fused(w)) return gen_forward(w, cache, tokens, qpos, cache.max_len, false);
  const LlamaConfig& c = w.cfg;
  const int64_t B = tokens.size(0);
  GLVQ_ASSERT(tokens.dim() == 2 && tokens.size(1) == 1 && B == cache.batch && tokens.is_cuda());
  GLVQ_ASSERT(qpos.numel() == 1 && qpos.scalar_type() == at::kLong && qpos.is_cuda());
  GLVQ_ASSERT(w.rope.cos.is_contiguous() && w.rope.sin.is_contiguous() && w.rope.cos.size(1) == c.head_dim);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const float eps = float(c.rms_eps);
  GenAttnShape s;
  s.batch = int(B);
  s.heads = c.n_heads;
  s.kv_heads = c.n_kv_heads;
  s.head_dim = c.head_dim;
  s.max_len = cache.max_len;
  const auto half_opts = at::TensorOptions().dtype(at::kHalf).device(w.device);
  at::Tensor x = w.embed.index_select(0, tokens.reshape({-1})).to(at::kFloat).contiguous();  // [B, hidden]
  at::Tensor h = at::empty({B, c.hidden}, half_opts);
  at::Tensor q_rot = at::empty({B, int64_t(c.n_heads) * c.head_dim}, half_opts);
  at::Tensor attn = at::empty_like(q_rot);
  at::Tensor ws = at::empty({int64_t(gen_attention_workspace_floats(s))}, half_opts.dtype(at::kFloat));
  at::Tensor pending;  // the last linear's output, not yet added into x
  for (size_t i = 0; i < w.blocks.size(); ++i) {
    const GenBlock& blk = w.blocks[i];
    const int64_t bi = int64_t(i);
    at::Tensor& kc = cache.k[i];
    at::Tensor& vc = cache.v[i];
    GLVQ_ASSERT(kc.is_contiguous() && vc.is_contiguous() && kc.scalar_type() == at::kHalf);
    norm_into(x, pending, blk.input_norm, h, eps, stream, bi);
    const at::Tensor q = run_linear(blk, Linear::Q, h), k = run_linear(blk, Linear::K, h);
    const at::Tensor v = run_linear(blk, Linear::V, h);
    check_launch(gen_rope_kv_launch(s, hp(q), hp(k), hp(v), w.rope.cos.data_ptr<float>(),
                                    w.rope.sin.data_ptr<float>(), w.rope.cos.size(0), qpos.data_ptr<int64_t>(),
                                    hp_mut(q_rot), hp_mut(kc), hp_mut(vc), stream),
                 "rope + KV write", bi);
    check_launch(gen_attention_launch(s, hp(q_rot), hp(kc), hp(vc), qpos.data_ptr<int64_t>(), ws.data_ptr<float>(),
                                      hp_mut(attn), stream),
                 "attention", bi);
    norm_into(x, run_linear(blk, Linear::O, attn), blk.post_norm, h, eps, stream, bi);
    const at::Tensor g = run_linear(blk, Linear::Gate, h), u = run_linear(blk, Linear::Up, h);
    GLVQ_ASSERT(g.sizes() == u.sizes());
    at::Tensor act = at::empty_like(g);
    check_launch(gen_silu_mul_launch(hp(g), hp(u), hp_mut(act), g.numel(), stream), "silu * mul", bi);
    pending = run_linear(blk, Linear::Down, act);
  }
  norm_into(x, pending, w.norm, h, eps, stream, -1);
  return at::linear(h, w.lm_head).to(at::kFloat);
}

}  // namespace glvq
