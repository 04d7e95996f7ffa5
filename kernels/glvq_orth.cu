// Incoherence transform of activation rows: one block per row, the row in shared memory.
#include "glvq_orth.cuh"

namespace glvq {
namespace {

constexpr int kOrthThreads = 1024;

// forward:   s = D x; s = (I_m (x) H_p) s; y = (C (x) I_p) s / sqrt(p)
// transpose: s = (C^T (x) I_p) x; s = (I_m (x) H_p) s; y = D s / sqrt(p)
// (the two Kronecker factors commute, so either order gives K = C (x) H.)
// A decode step runs this on one row per linear (twice), so one block does a row and its
// latency is what counts: the row is read and written 4 elements a thread at a time
// (VEC, one 8-byte load in flight per element quad, unrolled), index math is 32-bit with
// shifts (p = 2^logp; 64-bit divisions cost ~100 instructions each), the butterflies go
// two levels a pass (half the barriers), and C and, for the transpose, the raw row sit
// in shared memory after the row when they fit (SMEM_MIX), so that the m-term sums read
// no global memory.
struct OrthArgs {
  const __half* X;
  int64_t ldx;
  __half* Y;
  int64_t ldy;
  int n, m, logp;
  const float* signs;
  const float* C;
  bool transpose, vec, smem_mix;
};

/// dst[i] = x[i] (* signs[i]) for i < n.
__device__ __forceinline__ void load_row(const OrthArgs& o, const __half* __restrict__ x, float* dst, bool signed_) {
  if (o.vec) {
#pragma unroll 4
    for (int q = threadIdx.x; q < (o.n >> 2); q += blockDim.x) {
      const uint2 raw = __ldg(reinterpret_cast<const uint2*>(x) + q);
      const float2 f01 = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
      const float2 f23 = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
      float4 v = make_float4(f01.x, f01.y, f23.x, f23.y);
      if (signed_) {
        const float4 sg = __ldg(reinterpret_cast<const float4*>(o.signs) + q);
        v = make_float4(v.x * sg.x, v.y * sg.y, v.z * sg.z, v.w * sg.w);
      }
      reinterpret_cast<float4*>(dst)[q] = v;
    }
  } else {
    for (int i = threadIdx.x; i < o.n; i += blockDim.x)
      dst[i] = signed_ ? __half2float(x[i]) * o.signs[i] : __half2float(x[i]);
  }
}

/// y[i] = s[i] * scale (* signs[i]) for i < n.
__device__ __forceinline__ void store_row(const OrthArgs& o, const float* s, float scale, __half* __restrict__ y,
                                          bool signed_) {
  if (o.vec) {
#pragma unroll 4
    for (int q = threadIdx.x; q < (o.n >> 2); q += blockDim.x) {
      float4 v = reinterpret_cast<const float4*>(s)[q];
      float4 sg = signed_ ? __ldg(reinterpret_cast<const float4*>(o.signs) + q) : make_float4(1.f, 1.f, 1.f, 1.f);
      const __half2 h01 = __floats2half2_rn(v.x * scale * sg.x, v.y * scale * sg.y);
      const __half2 h23 = __floats2half2_rn(v.z * scale * sg.z, v.w * scale * sg.w);
      uint2 raw;
      raw.x = *reinterpret_cast<const unsigned*>(&h01);
      raw.y = *reinterpret_cast<const unsigned*>(&h23);
      reinterpret_cast<uint2*>(y)[q] = raw;
    }
  } else {
    for (int i = threadIdx.x; i < o.n; i += blockDim.x)
      y[i] = __float2half_rn(signed_ ? s[i] * scale * o.signs[i] : s[i] * scale);
  }
}

__global__ void __launch_bounds__(kOrthThreads) orth_kernel(OrthArgs o) {
  extern __shared__ __align__(16) float s[];
  const int n = o.n, m = o.m, logp = o.logp;
  const int p = 1 << logp, pmask = p - 1;
  const __half* x = o.X + int64_t(blockIdx.x) * o.ldx;
  __half* y = o.Y + int64_t(blockIdx.x) * o.ldy;
  // shared memory: s[n], then (smem_mix) the raw row r[n] (transpose only) and C[m*m]
  float* r = s + n;
  const float* Cm = o.C;
  if (m > 1 && o.smem_mix) {
    float* Cs = o.transpose ? r + n : r;
    for (int i = threadIdx.x; i < m * m; i += blockDim.x) Cs[i] = o.C[i];
    Cm = Cs;
  }
  if (!o.transpose) {
    load_row(o, x, s, true);
  } else if (m == 1) {
    load_row(o, x, s, false);
  } else {
    if (o.smem_mix) {
      load_row(o, x, r, false);
      __syncthreads();
    }
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const int a = i >> logp, b = i & pmask;
      float acc = 0.0f;
      if (o.smem_mix)
        for (int a2 = 0; a2 < m; ++a2) acc = fmaf(Cm[a2 * m + a], r[(a2 << logp) + b], acc);
      else
        for (int a2 = 0; a2 < m; ++a2) acc = fmaf(Cm[a2 * m + a], __half2float(x[(a2 << logp) + b]), acc);
      s[i] = acc;
    }
  }
  __syncthreads();
  // Walsh-Hadamard butterflies inside each segment of p, levels h and 2h in one pass:
  // quads i0 + {0, h, 2h, 3h} with bits log h and log h + 1 of i0 clear
  int logh = 0;
  for (; logh + 2 <= logp; logh += 2) {
    const int h = 1 << logh;
    for (int k = threadIdx.x; k < (n >> 2); k += blockDim.x) {
      const int seg = k >> (logp - 2), j = k & ((p >> 2) - 1);
      const int i0 = (seg << logp) + ((j >> logh) << (logh + 2)) + (j & (h - 1));
      const float a0 = s[i0], a1 = s[i0 + h], a2 = s[i0 + 2 * h], a3 = s[i0 + 3 * h];
      const float b0 = a0 + a1, b1 = a0 - a1, b2 = a2 + a3, b3 = a2 - a3;
      s[i0] = b0 + b2;
      s[i0 + 2 * h] = b0 - b2;
      s[i0 + h] = b1 + b3;
      s[i0 + 3 * h] = b1 - b3;
    }
    __syncthreads();
  }
  if (logh < logp) {  // one level left (logp odd): pairs (i0, i0 + p/2)
    const int h = 1 << logh;
    for (int k = threadIdx.x; k < (n >> 1); k += blockDim.x) {
      const int seg = k >> (logp - 1), j = k & (h - 1);
      const int i0 = (seg << logp) + j;
      const float a0 = s[i0], a1 = s[i0 + h];
      s[i0] = a0 + a1;
      s[i0 + h] = a0 - a1;
    }
    __syncthreads();
  }
  const float scale = rsqrtf(float(p));
  if (o.transpose) {
    store_row(o, s, scale, y, true);
  } else if (m == 1) {
    store_row(o, s, scale, y, false);
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const int a = i >> logp, b = i & pmask;
      float acc = 0.0f;
      for (int a2 = 0; a2 < m; ++a2) acc = fmaf(Cm[a * m + a2], s[(a2 << logp) + b], acc);
      y[i] = __float2half_rn(acc * scale);
    }
  }
}

int max_smem_optin() {
  int dev = 0, v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
    return 48 * 1024;
  return v;
}

}  // namespace

int64_t glvq_orth_max_n() {
  static const int smem = max_smem_optin();
  return smem / int64_t(sizeof(float));
}

cudaError_t glvq_orth_launch(const __half* X, int64_t ldx, __half* Y, int64_t ldy, int rows, int64_t n, int64_t m,
                             const float* signs, const float* C, bool transpose, cudaStream_t stream) {
  if (rows < 0 || n < 1 || m < 1 || n % m || ((n / m) & (n / m - 1)) || (m > 1 && !C) || ldx < n || ldy < n ||
      n > glvq_orth_max_n() || static_cast<const void*>(X) == static_cast<const void*>(Y))
    return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  static bool raised = false;  // once per process: the attribute is the device maximum
  if (!raised) {
    const cudaError_t e =
        cudaFuncSetAttribute(orth_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(glvq_orth_max_n() * 4));
    if (e != cudaSuccess) return e;
    raised = true;
  }
  OrthArgs o{X, ldx, Y, ldy, int(n), int(m), 0, signs, C, transpose, false, false};
  while ((int64_t(1) << o.logp) < n / m) ++o.logp;
  const auto aligned = [](const void* q, uintptr_t a) { return reinterpret_cast<uintptr_t>(q) % a == 0; };
  o.vec = n % 4 == 0 && ldx % 4 == 0 && ldy % 4 == 0 && aligned(X, 8) && aligned(Y, 8) && aligned(signs, 16);
  const int64_t mix = m > 1 ? (transpose ? n : 0) + m * m : 0;  // floats after the row
  o.smem_mix = m > 1 && n + mix <= glvq_orth_max_n();
  const size_t smem = size_t(n + (o.smem_mix ? mix : 0)) * sizeof(float);
  orth_kernel<<<unsigned(rows), kOrthThreads, smem, stream>>>(o);
  return cudaGetLastError();
}

}  // namespace glvq
