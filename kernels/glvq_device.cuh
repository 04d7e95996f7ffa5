#pragma once
/// Device helpers shared by the GLVQ kernels (device-only; include from .cu files).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>

#include "glvq_math.h"

namespace glvq {
namespace dev {

/// Unsigned code j of a packed vector (b bits per code, LSB first) read from bytes `p`.
__device__ __forceinline__ int32_t code_at(const uint8_t* __restrict__ p, int j, int b) {
  const int pos = j * b;
  uint32_t x = p[pos >> 3];
  if ((pos & 7) + b > 8) x |= uint32_t(p[(pos >> 3) + 1]) << 8;
  return int32_t((x >> (pos & 7)) & ((1u << b) - 1u));
}

/// t[j] = z_j + 1/2 for the d codes of one packed vector at src. D = d at compile time
/// (multiples of 8: eight codes are b whole bytes, so each group of eight is one 64-bit
/// register filled by b byte loads; 4: one 32-bit register) or 0 (runtime d, per code).
template <int D>
__device__ __forceinline__ void load_code_values(const uint8_t* __restrict__ src, int d, int b, float* t) {
  const uint32_t mask = (1u << b) - 1u;
  if constexpr (D > 0 && D % 8 == 0) {
#pragma unroll
    for (int k = 0; k < D / 8; ++k) {
      uint64_t piece = 0;
#pragma unroll
      for (int e = 0; e < 8; ++e)
        if (e < b) piece |= uint64_t(src[k * b + e]) << (8 * e);
#pragma unroll
      for (int q = 0; q < 8; ++q) t[8 * k + q] = fp::code_value(int32_t((piece >> (q * b)) & mask), b);
    }
  } else if constexpr (D == 4) {
    const int vb = (4 * b + 7) >> 3;
    uint32_t v = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (e < vb) v |= uint32_t(src[e]) << (8 * e);
#pragma unroll
    for (int q = 0; q < 4; ++q) t[q] = fp::code_value(int32_t((v >> (q * b)) & mask), b);
  } else {
    for (int j = 0; j < d; ++j) t[j] = fp::code_value(code_at(src, j, b), b);
  }
}

/// sum_j row[j] t[j] accumulated with fmaf, j ascending from 0 (the reference's order).
/// With D % 4 == 0 the row (16-byte aligned, shared memory) is read 4 floats at a time.
template <int D>
__device__ __forceinline__ float row_dot(const float* __restrict__ row, const float* t, int d) {
  float u = 0.0f;
  if constexpr (D > 0 && D % 4 == 0) {
#pragma unroll
    for (int j = 0; j < D; j += 4) {
      const float4 g = *reinterpret_cast<const float4*>(row + j);
      u = fp::fma(g.x, t[j], u);
      u = fp::fma(g.y, t[j + 1], u);
      u = fp::fma(g.z, t[j + 2], u);
      u = fp::fma(g.w, t[j + 3], u);
    }
  } else {
    for (int j = 0; j < d; ++j) u = fp::fma(row[j], t[j], u);
  }
  return u;
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// Two fp16 lanes a - b (round to nearest; exact for the small integers used here).
__device__ __forceinline__ uint32_t hsub2_bits(uint32_t a, uint32_t b) {
  uint32_t r;
  asm("sub.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/// (a & mask) | bits in one LOP3 (the compiler splits it in two when both are immediates).
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t bits) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "r"(mask), "r"(bits));
  return d;
}

/// Programmatic dependent launch (sm_90): let the next kernel in the stream start its
/// prologue now / wait here until the previous kernel's results are visible. Both are
/// no-ops when the launches are not programmatically dependent.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/// D += A * B for one m16n8k16 tile: A fp16 (4 regs), B fp16 (2 regs), D fp32 (4 regs).
__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                          uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // tensor-core path needs sm_80+; the launcher is only reached on such GPUs
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

}  // namespace dev
}  // namespace glvq

namespace glvq {
namespace dev {

/// Constants of a group's fast inverse companding.
struct ExpandConst {
  float s;        ///< scale
  float s_mu;     ///< s / mu (mu > 0)
  float log2_mu;  ///< log2(1 + mu); 0 means mu = 0
};

__device__ __forceinline__ ExpandConst expand_const(float s, float mu) {
  ExpandConst c;
  c.s = s;
  c.s_mu = mu > 0.0f ? s / mu : 0.0f;
  c.log2_mu = mu > 0.0f ? log2f(1.0f + mu) : 0.0f;
  return c;
}

__device__ __forceinline__ float ex2_approx(float x) {
  float y;
  asm("ex2.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/// c^-1(u) to about 2^-20 relative (not bit-exact with glvq_expand): MUFU.EX2 for large
/// |u|, a Taylor series of expm1 where e^x - 1 would cancel. Enough for fp16/bf16 outputs
/// (at most 1 ulp from the reference) and for the GEMV.
__device__ __forceinline__ float fast_expand(float u, const ExpandConst& c) {
  if (c.log2_mu == 0.0f) return c.s * u;
  const float x = fabsf(u) * c.log2_mu;  // e^(|u| ln(1+mu)) = 2^x
  float e;
  if (x < 0.36f) {
    const float y = x * 0.693147180560f;
    float p = fmaf(y, 1.0f / 720.0f, 1.0f / 120.0f);
    p = fmaf(p, y, 1.0f / 24.0f);
    p = fmaf(p, y, 1.0f / 6.0f);
    p = fmaf(p, y, 0.5f);
    p = fmaf(p, y, 1.0f);
    e = p * y;
  } else {
    e = ex2_approx(x) - 1.0f;
  }
  return copysignf(c.s_mu * e, u);
}

}  // namespace dev
}  // namespace glvq
