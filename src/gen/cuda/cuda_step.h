#pragma once
/// glvq-generate's CUDA decode step (one new token per sequence) on the fused ops of
/// kernels/gen_step_ops.cuh: per block an rmsnorm, rope + KV write, split-K attention
/// (two kernels), add + rmsnorm and silu*mul around the seven linears, instead of
/// gen_forward's ~55 LibTorch kernels. Compiled with GLVQ_WITH_TORCH_CUDA only.
#include "gen/gen_forward.h"

#include <ATen/ATen.h>

namespace glvq {

/// True when W can take cuda_decode_step's fused path (CUDA, fp16 activations, even
/// head_dim <= 128); otherwise cuda_decode_step runs gen_forward.
bool cuda_decode_step_fused(const GenWeights& w);

/// gen_forward(w, cache, tokens, qpos, cache.max_len, false) for one token per sequence:
/// TOKENS [B, 1] int64 and QPOS [1] int64 (the position, below cache.max_len), both on the
/// device; writes K/V at QPOS, returns fp32 logits [B, vocab]. Issues no host
/// synchronisation and allocates only per call (capturable in a CUDA graph).
at::Tensor cuda_decode_step(const GenWeights& w, KvCache& cache, const at::Tensor& tokens, const at::Tensor& qpos);

}  // namespace glvq
