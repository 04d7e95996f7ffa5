#pragma once
// Device decoding of the shaped code's sub-codes for the fused GEMV (kernels/glvq_gemv_shaped.cu):
// the books as fp16 entries in shared memory, sign and parity bits applied with bit operations.
// The codewords are those of quant/glvq_codebook.h bit for bit (one stage is exact in fp16).
#include <cuda_fp16.h>

#include <cstdint>

#include "quant/glvq_codebook_tables.h"

namespace glvq {
namespace shaped {

constexpr int kP2 = cbt::kBook2Patterns;

// Included by kernels/glvq_gemv_shaped.cu only: the constant below is that file's
// (no relocatable device code), set from cbt::kStageBeta by its set-up.
__constant__ float c_beta_h[8][4];  ///< the scale of each residual stage

/// The books as fp16, one 16-byte entry per point: the 2-bit book's magnitudes with its
/// parity bits in the sign bits of coordinates 3 and 7 (low, high), the 1-bit book signed.
struct Books {
  uint4 b2[kP2];
  uint4 b1[256];
};

/// The signed 2-bit codeword of sub-code k (16 bits): pattern k >> 6, sign bits k & 63
/// (coordinates 0-2 and 4-6; 3 and 7 complete each half's parity, quant/glvq_codebook.h).
__device__ __forceinline__ uint4 decode2h(const Books& S, uint32_t k) {
  uint4 e = S.b2[k >> 6];
  const uint32_t s = k & 63u;
  const uint32_t plo = __popc(s & 7u) & 1u, phi = __popc(s & 56u) & 1u;
  e.x ^= ((s & 1u) << 15) | ((s & 2u) << 30);
  e.y ^= ((s & 4u) << 13) | (plo << 31);
  e.z ^= ((s & 8u) << 12) | ((s & 16u) << 27);
  e.w ^= ((s & 32u) << 10) | (phi << 31);
  return e;
}

__device__ __forceinline__ void add_scaled(float* c, float beta, uint4 v) {
  const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w[q]));
    c[2 * q] = fmaf(beta, f.x, c[2 * q]);
    c[2 * q + 1] = fmaf(beta, f.y, c[2 * q + 1]);
  }
}

/// The codeword of a B-bit sub-code (8B bits) as 8 fp16 values. One stage (B <= 2) is
/// exact in fp16; more are summed in float as the reference does, then rounded.
template <int B>
__device__ __forceinline__ uint4 decode_sub(const Books& S, uint64_t code) {
  if constexpr (B == 2) {
    return decode2h(S, uint32_t(code));
  } else if constexpr (B == 1) {
    return S.b1[uint32_t(code) & 255u];
  } else {
    float c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int shift = 0;
#pragma unroll
    for (int s = 0, w = B; w > 0; ++s, w -= 2) {
      const int book = w >= 2 ? 2 : 1;
      const uint32_t k = uint32_t(code >> shift) & ((1u << (8 * book)) - 1u);
      add_scaled(c, c_beta_h[B - 1][s], book == 2 ? decode2h(S, k) : S.b1[k]);
      shift += 8 * book;
    }
    uint4 r;
    uint32_t* w = &r.x;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const __half2 h = __floats2half2_rn(c[2 * q], c[2 * q + 1]);
      w[q] = *reinterpret_cast<const uint32_t*>(&h);
    }
    return r;
  }
}

/// Sub-code j (0..3) of a lane's 4 * 8B-bit blob (little-endian words w).
template <int B>
__device__ __forceinline__ uint64_t sub_of(const uint32_t* w, int j) {
  const int pos = 8 * B * j, wi = pos >> 5, sh = pos & 31;
  uint64_t v = (uint64_t(w[wi + 1 < B ? wi + 1 : wi]) << 32 | w[wi]) >> sh;
  if constexpr (B > 4) {
    if (sh > 0 && wi + 2 < B) v |= uint64_t(w[wi + 2]) << (64 - sh);
  }
  if constexpr (B >= 8) return v;
  else return v & ((1ull << (8 * B)) - 1ull);
}

}  // namespace shaped
}  // namespace glvq
