// The fused non-linear ops of a decode step (gen_step_ops.cuh says what each computes).
// A decode step is latency-bound: each op is one launch with enough blocks to spread
// over the GPU at batch 1, and the attention splits the positions, not only the heads.
#include "gen_step_ops.cuh"

#include <cmath>

namespace glvq {
namespace {

constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

/// The sum of V over the block, returned to every thread (blockDim.x a multiple of 32).
__device__ float block_sum(float v) {
  __shared__ float part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  v = lane < warps ? part[lane] : 0.0f;
  return warp_sum(v);  // every warp reduces the same partials, so no second barrier is needed
}

// ---- rmsnorm, optionally after the residual add: one block per row.
// The weight multiplies in fp32 before the rounding, in LibTorch's order (x * r) * w;
// __fmul_rn keeps nvcc from contracting anything into a multiply-add LibTorch does not do.
__global__ void rmsnorm_kernel(const float* x_in, const __half* y, float* x_out, const float* __restrict__ w,
                               __half* __restrict__ h, int n, float eps) {
  const int64_t off = int64_t(blockIdx.x) * n;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = x_in[off + i];
    if (y) {
      v += __half2float(y[off + i]);
      x_out[off + i] = v;  // re-read below by this same thread only
    }
    ss += v * v;
  }
  const float r = rsqrtf(block_sum(ss) * (1.0f / float(n)) + eps);
  const float* x = y ? x_out : x_in;
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    h[off + i] = __float2half_rn(__fmul_rn(__fmul_rn(x[off + i], r), w[i]));
}

int norm_threads(int n) {
  const int t = ((n / 8 + 31) / 32) * 32;  // ~8 values a thread: 512 threads at 4096, 1024 at 8192
  return t < 64 ? 64 : (t > 1024 ? 1024 : t);
}

cudaError_t rmsnorm_any(const float* x_in, const __half* y, float* x_out, const float* w, __half* h, int rows, int n,
                        float eps, cudaStream_t stream) {
  if (n <= 0 || rows < 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  rmsnorm_kernel<<<rows, norm_threads(n), 0, stream>>>(x_in, y, x_out, w, h, n, eps);
  return cudaGetLastError();
}

// ---- rope + KV write: one thread per (head, i < hd/2) pair of q, k and v heads of a row.
struct RopeArgs {
  const __half* q;
  const __half* k;
  const __half* v;
  const float* cos;
  const float* sin;
  int64_t rope_rows;
  const int64_t* qpos;
  __half* q_out;
  __half* k_cache;
  __half* v_cache;
  int heads, kv_heads, hd;
  int64_t max_len;
};

constexpr int kRopeThreads = 128;

__global__ void __launch_bounds__(kRopeThreads) rope_kv_kernel(RopeArgs a) {
  const int b = blockIdx.y, half = a.hd / 2;
  const int t = blockIdx.x * kRopeThreads + threadIdx.x;
  if (t >= (a.heads + 2 * a.kv_heads) * half) return;
  const int64_t p = *a.qpos;
  if (p < 0 || p >= a.max_len || p >= a.rope_rows) return;
  const int head = t / half, i = t % half;
  const int64_t kv_row = int64_t(b) * a.kv_heads;
  if (head >= a.heads + a.kv_heads) {  // v: copied as it is
    const int g = head - a.heads - a.kv_heads;
    const __half* src = a.v + (kv_row + g) * a.hd;
    __half* dst = a.v_cache + ((kv_row + g) * a.max_len + p) * a.hd;
    dst[i] = src[i];
    dst[i + half] = src[i + half];
    return;
  }
  const bool is_q = head < a.heads;
  const int g = head - a.heads;
  const __half* src = is_q ? a.q + (int64_t(b) * a.heads + head) * a.hd : a.k + (kv_row + g) * a.hd;
  __half* dst = is_q ? a.q_out + (int64_t(b) * a.heads + head) * a.hd
                     : a.k_cache + ((kv_row + g) * a.max_len + p) * a.hd;
  const float* c = a.cos + p * a.hd;
  const float* s = a.sin + p * a.hd;
  const float x1 = __half2float(src[i]), x2 = __half2float(src[i + half]);
  // x * cos + cat(-x2, x1) * sin, as three separately rounded LibTorch ops
  const float o1 = __fadd_rn(__fmul_rn(x1, c[i]), __fmul_rn(-x2, s[i]));
  const float o2 = __fadd_rn(__fmul_rn(x2, c[i + half]), __fmul_rn(x1, s[i + half]));
  dst[i] = __float2half_rn(o1);  // q_out may be q: this thread alone reads and writes these two
  dst[i + half] = __float2half_rn(o2);
}

// ---- split-K decode attention. Block (h, split, b) of kAttnWarps warps: the split's
// positions [j0, j1) are dealt to the warps kAttnKeys at a time; a lane holds hd/32 values
// of the query (as half2 pairs), each key's dot product is a butterfly over the warp, done
// for the kAttnKeys keys together so their loads and shuffles overlap. Each warp keeps an
// online softmax (running max m, sum l, weighted V acc); the block merges its warps' into
// one partial per split, and attention_combine_kernel merges the splits.
constexpr int kAttnWarps = 4, kAttnThreads = 32 * kAttnWarps, kAttnKeys = 8;

struct AttnArgs {
  const __half* q;
  const __half* k;
  const __half* v;
  const int64_t* qpos;
  float* ws;
  __half* out;
  int heads, kv_heads, rep, hd, splits;
  int64_t max_len;
  float scale;
};

__device__ __forceinline__ int64_t last_pos(const AttnArgs& a) {
  const int64_t p = *a.qpos;
  return p < 0 ? 0 : (p >= a.max_len ? a.max_len - 1 : p);
}

/// E: half2 pairs per lane, ceil(hd / 64).
template <int E>
__global__ void __launch_bounds__(kAttnThreads) attention_split_kernel(AttnArgs a) {
  const int h = blockIdx.x, split = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n = last_pos(a) + 1;
  const int64_t chunk = (n + a.splits - 1) / a.splits, j0 = split * chunk;
  const int64_t j1 = j0 + chunk < n ? j0 + chunk : n;
  float* part = a.ws + ((int64_t(b) * a.heads + h) * a.splits + split) * (a.hd + 2);
  if (j0 >= j1) {  // fewer positions than splits: an empty partial, skipped by the combine
    if (threadIdx.x == 0) {
      part[0] = -INFINITY;
      part[1] = 0.0f;
    }
    return;
  }
  const int64_t kv_off = ((int64_t(b) * a.kv_heads + h / a.rep) * a.max_len) * a.hd;
  const __half2* K = reinterpret_cast<const __half2*>(a.k + kv_off);
  const __half2* V = reinterpret_cast<const __half2*>(a.v + kv_off);
  const __half2* qrow = reinterpret_cast<const __half2*>(a.q + (int64_t(b) * a.heads + h) * a.hd);
  const int pairs = a.hd / 2;
  float2 qv[E], acc[E];
#pragma unroll
  for (int e = 0; e < E; ++e) {
    const int d = e * 32 + lane;
    qv[e] = d < pairs ? __half22float2(qrow[d]) : make_float2(0.0f, 0.0f);
    acc[e] = make_float2(0.0f, 0.0f);
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t jb = j0 + int64_t(warp) * kAttnKeys; jb < j1; jb += int64_t(kAttnWarps) * kAttnKeys) {
    float2 kf[kAttnKeys][E], vf[kAttnKeys][E];
#pragma unroll
    for (int i = 0; i < kAttnKeys; ++i) {
      const bool key = jb + i < j1;  // never read past p
#pragma unroll
      for (int e = 0; e < E; ++e) {
        const int d = e * 32 + lane;
        const bool ok = key && d < pairs;
        const int64_t at = (jb + i) * pairs + d;
        kf[i][e] = ok ? __half22float2(K[at]) : make_float2(0.0f, 0.0f);
        vf[i][e] = ok ? __half22float2(V[at]) : make_float2(0.0f, 0.0f);
      }
    }
    float sc[kAttnKeys];
#pragma unroll
    for (int i = 0; i < kAttnKeys; ++i) {
      sc[i] = 0.0f;
#pragma unroll
      for (int e = 0; e < E; ++e) sc[i] += qv[e].x * kf[i][e].x + qv[e].y * kf[i][e].y;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
#pragma unroll
      for (int i = 0; i < kAttnKeys; ++i) sc[i] += __shfl_xor_sync(kFull, sc[i], off);
    }
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < kAttnKeys; ++i) {
      sc[i] = jb + i < j1 ? sc[i] * a.scale : -INFINITY;
      mx = fmaxf(mx, sc[i]);
    }
    const float mn = fmaxf(m, mx);  // finite: key jb is in range
    const float corr = __expf(m - mn);
    l *= corr;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = make_float2(acc[e].x * corr, acc[e].y * corr);
#pragma unroll
    for (int i = 0; i < kAttnKeys; ++i) {
      const float pi = __expf(sc[i] - mn);
      l += pi;
#pragma unroll
      for (int e = 0; e < E; ++e) acc[e] = make_float2(acc[e].x + pi * vf[i][e].x, acc[e].y + pi * vf[i][e].y);
    }
    m = mn;
  }
  // merge the warps (a warp without keys has m = -inf, l = 0, acc = 0: weight 0)
  __shared__ float sm[kAttnWarps], sl[kAttnWarps];
  __shared__ float2 sacc[kAttnWarps][kGenMaxHeadDim / 2];
  if (lane == 0) {
    sm[warp] = m;
    sl[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < E; ++e)
    if (e * 32 + lane < pairs) sacc[warp][e * 32 + lane] = acc[e];
  __syncthreads();
  float M = -INFINITY;
#pragma unroll
  for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, sm[w]);  // finite: warp 0 had key j0
  float wt[kAttnWarps];
#pragma unroll
  for (int w = 0; w < kAttnWarps; ++w) wt[w] = __expf(sm[w] - M);
  for (int d = threadIdx.x; d < pairs; d += kAttnThreads) {
    float2 s = make_float2(0.0f, 0.0f);
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) s = make_float2(s.x + wt[w] * sacc[w][d].x, s.y + wt[w] * sacc[w][d].y);
    part[2 + 2 * d] = s.x;
    part[3 + 2 * d] = s.y;
  }
  if (threadIdx.x == 0) {
    float L = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) L += wt[w] * sl[w];
    part[0] = M;
    part[1] = L;
  }
}

/// Block (h, b), a thread per output value: out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
__global__ void __launch_bounds__(kGenMaxHeadDim) attention_combine_kernel(AttnArgs a) {
  const int h = blockIdx.x, b = blockIdx.y, d = threadIdx.x;
  if (d >= a.hd) return;
  const int64_t stride = a.hd + 2;
  const float* part = a.ws + (int64_t(b) * a.heads + h) * a.splits * stride;
  float M = -INFINITY;
  for (int s = 0; s < a.splits; ++s)
    if (part[s * stride + 1] > 0.0f) M = fmaxf(M, part[s * stride]);
  float num = 0.0f, den = 0.0f;
  for (int s = 0; s < a.splits; ++s) {
    const float* ps = part + s * stride;
    if (!(ps[1] > 0.0f)) continue;  // an empty split: its acc was never written
    const float c = expf(ps[0] - M);
    num += c * ps[2 + d];
    den += c * ps[1];
  }
  a.out[(int64_t(b) * a.heads + h) * a.hd + d] = __float2half_rn(num / den);
}

__global__ void silu_mul_kernel(const __half* __restrict__ g, const __half* __restrict__ u, __half* __restrict__ out,
                                int64_t count) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const float x = __half2float(g[i]);
  // LibTorch's silu (x / (1 + exp(-x)), expf) then a separate multiply
  out[i] = __float2half_rn(__fmul_rn(x / (1.0f + expf(-x)), __half2float(u[i])));
}

bool attn_shape_ok(const GenAttnShape& s) {
  return s.batch >= 1 && s.batch <= 65535 && s.heads >= 1 && s.kv_heads >= 1 && s.heads % s.kv_heads == 0 &&
         s.head_dim >= 2 && s.head_dim % 2 == 0 && s.head_dim <= kGenMaxHeadDim && s.max_len >= 1;
}

}  // namespace

cudaError_t gen_rmsnorm_launch(const float* x, const float* w, __half* h, int rows, int n, float eps,
                               cudaStream_t stream) {
  return rmsnorm_any(x, nullptr, nullptr, w, h, rows, n, eps, stream);
}

cudaError_t gen_add_rmsnorm_launch(float* x, const __half* y, const float* w, __half* h, int rows, int n, float eps,
                                   cudaStream_t stream) {
  if (!y) return cudaErrorInvalidValue;
  return rmsnorm_any(x, y, x, w, h, rows, n, eps, stream);
}

cudaError_t gen_rope_kv_launch(const GenAttnShape& s, const __half* q, const __half* k, const __half* v,
                               const float* cos, const float* sin, int64_t rope_rows, const int64_t* qpos,
                               __half* q_out, __half* k_cache, __half* v_cache, cudaStream_t stream) {
  if (!attn_shape_ok(s)) return cudaErrorInvalidValue;
  const RopeArgs a{q, k, v, cos, sin, rope_rows, qpos, q_out, k_cache, v_cache, s.heads, s.kv_heads, s.head_dim,
                   s.max_len};
  const int items = (s.heads + 2 * s.kv_heads) * (s.head_dim / 2);
  rope_kv_kernel<<<dim3((items + kRopeThreads - 1) / kRopeThreads, s.batch), kRopeThreads, 0, stream>>>(a);
  return cudaGetLastError();
}

int gen_attention_splits(const GenAttnShape& s) {
  // ~2048 blocks in all (a few waves of an H100/H200 at batch 1), at least 16 positions a
  // split at a full cache, at most 64 splits (the combine reads every one).
  const int64_t rows = int64_t(s.batch > 0 ? s.batch : 1) * (s.heads > 0 ? s.heads : 1);
  int64_t n = (2048 + rows - 1) / rows;
  const int64_t by_len = (s.max_len + 15) / 16;
  if (n > by_len) n = by_len;
  if (n > 64) n = 64;
  return int(n < 1 ? 1 : n);
}

size_t gen_attention_workspace_floats(const GenAttnShape& s) {
  return size_t(s.batch) * size_t(s.heads) * size_t(gen_attention_splits(s)) * size_t(s.head_dim + 2);
}

cudaError_t gen_attention_launch(const GenAttnShape& s, const __half* q, const __half* k_cache,
                                 const __half* v_cache, const int64_t* qpos, float* ws, __half* out,
                                 cudaStream_t stream) {
  if (!attn_shape_ok(s)) return cudaErrorInvalidValue;
  AttnArgs a{q, k_cache, v_cache, qpos, ws, out, s.heads, s.kv_heads, s.heads / s.kv_heads, s.head_dim,
             gen_attention_splits(s), s.max_len, float(1.0 / std::sqrt(double(s.head_dim)))};
  const dim3 grid(s.heads, a.splits, s.batch);
  if (s.head_dim <= 64) {
    attention_split_kernel<1><<<grid, kAttnThreads, 0, stream>>>(a);
  } else {
    attention_split_kernel<2><<<grid, kAttnThreads, 0, stream>>>(a);
  }
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  attention_combine_kernel<<<dim3(s.heads, s.batch), kGenMaxHeadDim, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t gen_silu_mul_launch(const __half* g, const __half* u, __half* a, int64_t count, cudaStream_t stream) {
  if (count < 0) return cudaErrorInvalidValue;
  if (count == 0) return cudaSuccess;
  constexpr int kThreads = 256;
  silu_mul_kernel<<<unsigned((count + kThreads - 1) / kThreads), kThreads, 0, stream>>>(g, u, a, count);
  return cudaGetLastError();
}

}  // namespace glvq
