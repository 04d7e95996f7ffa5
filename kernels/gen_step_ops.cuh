#pragma once
/// The non-linear part of glvq-generate's CUDA decode step (one new token per sequence),
/// fused so that a transformer block costs a handful of kernels besides its linears.
/// The definition of each op is src/gen/gen_forward.cpp's LibTorch code for n = 1 (the
/// CPU path and prefill keep running it); src/gen/cuda/cuda_step.cpp chains these.
/// Every pointer is device memory, every buffer contiguous row-major; B = batch rows.
/// The position of the new token is read from device memory (int64 qpos[0]) so that
/// one captured CUDA graph serves every step. Launchers return the launch's error.
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace glvq {

/// Attention shapes of a decode step.
struct GenAttnShape {
  int batch = 1;         ///< B, 1..65535
  int heads = 1;         ///< query heads H
  int kv_heads = 1;      ///< H % kv_heads == 0 (query head h reads KV head h / (H / kv_heads))
  int head_dim = 0;      ///< hd: even, at most kGenMaxHeadDim
  int64_t max_len = 0;   ///< cache positions (K/V caches are [B, kv_heads, max_len, hd])
};
constexpr int kGenMaxHeadDim = 128;

/// h[r] = fp16((x[r] * rsqrt(mean(x[r]^2) + eps)) * w), all in fp32 before the rounding
/// (nn/llama.cpp rms_norm, then .to(fp16)). x: fp32 [B, n]; w: fp32 [n]; h: fp16 [B, n].
cudaError_t gen_rmsnorm_launch(const float* x, const float* w, __half* h, int rows, int n, float eps,
                               cudaStream_t stream);

/// x[r] += fp32(y[r]) (the residual add of a linear's output), then h[r] = rmsnorm(x[r])
/// as gen_rmsnorm_launch. x: fp32 [B, n], updated in place; y: fp16 [B, n]; h: fp16 [B, n].
cudaError_t gen_add_rmsnorm_launch(float* x, const __half* y, const float* w, __half* h, int rows, int n, float eps,
                                   cudaStream_t stream);

/// With p = qpos[0]: q_out = fp16(rope(fp32(q), p)); k_cache[b, g, p, :] = fp16(rope(fp32(k), p));
/// v_cache[b, g, p, :] = v. rope(x, p) = x * cos[p] + cat(-x2, x1) * sin[p] (x1, x2 the two
/// halves of a head; no fused multiply-add, as LibTorch's separate ops). q, q_out: fp16
/// [B, H*hd] (q_out may equal q); k, v: fp16 [B, kv_heads*hd]; caches: fp16 [B, kv_heads,
/// max_len, hd]; cos, sin: fp32 [rope_rows, hd]. A p outside [0, min(max_len, rope_rows))
/// writes nothing (the callers never pass one; the check only keeps memory intact).
cudaError_t gen_rope_kv_launch(const GenAttnShape& s, const __half* q, const __half* k, const __half* v,
                               const float* cos, const float* sin, int64_t rope_rows, const int64_t* qpos,
                               __half* q_out, __half* k_cache, __half* v_cache, cudaStream_t stream);

/// Splits of the split-K attention for these shapes (never depends on the position).
int gen_attention_splits(const GenAttnShape& s);
/// Floats of the attention's workspace: B * H * splits * (hd + 2).
size_t gen_attention_workspace_floats(const GenAttnShape& s);

/// out[b, h] = sum_{j <= p} softmax_j(q[b, h] . K[b, h/rep, j] / sqrt(hd)) V[b, h/rep, j], p =
/// min(qpos[0], max_len - 1); keys past p are never read. fp32 scores and accumulation.
/// q: fp16 [B, H*hd]; caches as gen_rope_kv_launch; out: fp16 [B, H*hd]; ws: float
/// [gen_attention_workspace_floats(s)], needs no initialisation. Two kernels: each split
/// of the positions 0..p (their ranges follow p, their count does not) writes a partial
/// (max, sum, weighted V); a second combines the partials of each head.
/// cudaErrorInvalidValue for hd > kGenMaxHeadDim, odd hd or H % kv_heads != 0.
cudaError_t gen_attention_launch(const GenAttnShape& s, const __half* q, const __half* k_cache,
                                 const __half* v_cache, const int64_t* qpos, float* ws, __half* out,
                                 cudaStream_t stream);

/// a = fp16(silu(fp32(g)) * fp32(u)) elementwise over COUNT values (fp16 each).
cudaError_t gen_silu_mul_launch(const __half* g, const __half* u, __half* a, int64_t count, cudaStream_t stream);

}  // namespace glvq
