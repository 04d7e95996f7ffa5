#pragma once
/// Float arithmetic of the GLVQ code format, shared by the CPU reference
/// (src/quant/glvq_codec_ref.cpp) and the CUDA kernels so that encode is bit
/// exact on both: every operation is one IEEE-754 single-precision operation
/// rounded to nearest, and the transcendental functions are built from those
/// operations only (no libm/libdevice logf/expf, whose last bits differ between
/// glibc and CUDA). Callable from host and device; no CUDA headers needed on the host.
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define GLVQ_HD __host__ __device__ __forceinline__
#else
#define GLVQ_HD inline
#endif

namespace glvq {
namespace fp {

// On the device, the _rn intrinsics are never contracted into FMAs by nvcc.
// On the host, a compiler targeting FMA hardware (-mfma, -march=native) may
// contract a*b+c across statements; a volatile product stops it there.
#if defined(__CUDA_ARCH__)
GLVQ_HD float add(float a, float b) { return __fadd_rn(a, b); }
GLVQ_HD float sub(float a, float b) { return __fsub_rn(a, b); }
GLVQ_HD float mul(float a, float b) { return __fmul_rn(a, b); }
GLVQ_HD float div(float a, float b) { return __fdiv_rn(a, b); }
GLVQ_HD float fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
GLVQ_HD uint32_t bits(float x) { return __float_as_uint(x); }
GLVQ_HD float from_bits(uint32_t u) { return __uint_as_float(u); }
#else
#if defined(__FP_FAST_FMAF)
GLVQ_HD float mul(float a, float b) {
  volatile float r = a * b;
  return r;
}
#else
GLVQ_HD float mul(float a, float b) { return a * b; }
#endif
GLVQ_HD float add(float a, float b) { return a + b; }
GLVQ_HD float sub(float a, float b) { return a - b; }
GLVQ_HD float div(float a, float b) { return a / b; }
GLVQ_HD float fma(float a, float b, float c) { return std::fmaf(a, b, c); }
GLVQ_HD uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
GLVQ_HD float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
#endif

GLVQ_HD float abs(float x) { return from_bits(bits(x) & 0x7fffffffu); }
GLVQ_HD float copysign(float mag, float sgn) {
  return from_bits((bits(mag) & 0x7fffffffu) | (bits(sgn) & 0x80000000u));
}

/// ln(x) for finite x > 0 (fdlibm's logf scheme: x = 2^k m, m in [sqrt(1/2), sqrt(2)),
/// s = (m-1)/(m+1), ln m = 2 atanh s); under 1 ulp from the true value. +inf for +inf.
GLVQ_HD float log(float x) {
  uint32_t ix = bits(x);
  if (ix >= 0x7f800000u) return x;  // +inf, NaN, negatives (not used by the format)
  if (ix == 0) return from_bits(0xff800000u);
  int k = 0;
  if (ix < 0x00800000u) {  // subnormal: scale by 2^25
    x = mul(x, 33554432.0f);
    ix = bits(x);
    k = -25;
  }
  k += int(ix >> 23) - 127;
  ix &= 0x007fffffu;
  // m in [sqrt(1/2), sqrt(2)): borrow one from the exponent when the mantissa is past sqrt(2)
  const uint32_t i = (ix + 0x4afb20u) & 0x800000u;
  const float m = from_bits(ix | (i ^ 0x3f800000u));
  k += int(i >> 23);
  const float f = sub(m, 1.0f);
  const float s = div(f, add(2.0f, f));
  const float z = mul(s, s);
  const float w = mul(z, z);
  const float t1 = mul(w, fma(w, 0.24279078841f, 0.40000972152f));
  const float t2 = mul(z, fma(w, 0.28498786688f, 0.66666662693f));
  const float R = add(t2, t1);
  const float dk = float(k);
  const float hfsq = mul(mul(0.5f, f), f);
  // dk*ln2_hi - ((hfsq - (s*(hfsq+R) + dk*ln2_lo)) - f)
  const float a = fma(dk, 9.0580006145e-06f, mul(s, add(hfsq, R)));
  return sub(mul(dk, 6.9313812256e-01f), sub(sub(hfsq, a), f));
}

/// e^x for finite x; 0 below -103, +inf above 88.73; about 1 ulp.
GLVQ_HD float exp(float x) {
  if (!(x == x)) return x;
  if (x > 88.7228393555f) return from_bits(0x7f800000u);
  if (x < -103.972084045f) return 0.0f;
  const float kf = std::floor(fma(x, 1.44269502163f, 0.5f));
  // r = x - k ln2, ln2 split so that k*LN2_HI is exact for |k| < 2^8
  const float hi = fma(-kf, 6.9314575195e-01f, x);
  const float r = fma(-kf, 1.4286067653e-06f, hi);
  // Taylor series of e^r to r^7 on |r| <= 0.35: truncation under 6e-9
  float p = 1.98412698e-04f;  // 1/5040
  p = fma(p, r, 1.38888889e-03f);
  p = fma(p, r, 8.33333333e-03f);
  p = fma(p, r, 4.16666667e-02f);
  p = fma(p, r, 1.66666667e-01f);
  p = fma(p, r, 0.5f);
  p = fma(p, r, 1.0f);
  p = fma(p, r, 1.0f);
  // scale by 2^k in two steps so that 2^k itself never leaves the normal range
  const int k = int(kf);
  const int k1 = k / 2, k2 = k - k / 2;
  p = mul(p, from_bits(uint32_t(k1 + 127) << 23));
  return mul(p, from_bits(uint32_t(k2 + 127) << 23));
}

/// ln(1 + x) for x >= 0, accurate for small x too (Goldberg: ln(u) * x / (u - 1), u = 1 + x).
GLVQ_HD float log1p(float x) {
  const float u = add(1.0f, x);
  if (u == 1.0f) return x;
  if (bits(u) >= 0x7f800000u) return log(u);
  return div(mul(log(u), x), sub(u, 1.0f));
}

/// e^x - 1 for x >= 0, accurate for small x too (Kahan: (u - 1) * x / ln(u), u = e^x).
GLVQ_HD float expm1(float x) {
  const float u = exp(x);
  if (u == 1.0f) return x;
  if (bits(u) >= 0x7f800000u) return u;
  return div(mul(sub(u, 1.0f), x), log(u));
}

/// ln(1 + mu), the companding constant of a group; 0 for mu = 0.
GLVQ_HD float compand_log(float mu) { return mu == 0.0f ? 0.0f : log1p(mu); }

/// c(w) with the group's precomputed L = compand_log(mu).
GLVQ_HD float compand(float w, float s, float mu, float L) {
  if (mu == 0.0f) return div(w, s);
  const float a = div(abs(w), s);
  return copysign(div(log1p(mul(mu, a)), L), w);
}

/// c^-1(u) with the group's precomputed L = compand_log(mu).
GLVQ_HD float expand(float u, float s, float mu, float L) {
  if (mu == 0.0f) return mul(s, u);
  const float e = expm1(mul(abs(u), L));
  return copysign(div(mul(s, e), mu), u);
}

/// Babai rounding of one coordinate onto Z + 1/2, clamped to b bits: returns the
/// unsigned code z + 2^(b-1). NaN maps to code 0 (fmaxf returns the non-NaN operand).
GLVQ_HD int32_t round_code(float y, int bits) {
  const float lo = -float(1 << (bits - 1));
  const float hi = float((1 << (bits - 1)) - 1);
  const float z = fminf(fmaxf(std::floor(y), lo), hi);
  return int32_t(z) + (1 << (bits - 1));
}

/// t = z + 1/2 for an unsigned code uz (exact in float).
GLVQ_HD float code_value(int32_t uz, int bits) { return float(uz - (1 << (bits - 1))) + 0.5f; }

}  // namespace fp
}  // namespace glvq
