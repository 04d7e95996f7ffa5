#pragma once
/// The tensor-core GEMV kernels of the mma layout (kernels/glvq_mma_layout.h); internal to
/// glvq_gemv.cu, which launches them. One warp per (16-row tile, K split), one
/// m16n8k16 HMMA per 16 columns of a tile and batch half.
///
/// gemv_reg_kernel: a warp loads one or two chunks into registers, then unpacks and
/// multiplies them; at most 1 KB of a warp's codes is in flight, and nothing is loaded
/// while it computes. (A per-warp cp.async ring in shared memory, which overlaps the
/// loads with the math, measured slower on the H200 and was removed: docs/BENCH.md.)
/// Codes enter the tensor cores either as z = uz - 2^(b-1) exactly (1024 + uz built by
/// an AND/OR, then an HSUB2 of 1024 + 2^(b-1)), or (SUB) as the fp16 subnormal
/// uz * 2^-24 that the AND alone leaves (one instruction less per two codes); the
/// epilogue then scales by 2^24 and subtracts (2^(b-1) - 1/2) times each group's sum of
/// xt. Both are exact products; fp32 accumulation is unchanged.
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "glvq_device.cuh"
#include "glvq_mma_layout.h"

namespace glvq {
namespace mma_gemv {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

struct Args {
  const uint8_t* packed;
  const int64_t* coff;
  const uint8_t* cbits;
  int64_t row_tiles, row_tile_bytes, out, out_pad, in;
  int chunks, chunks_per_split, splits, groups, batch;
  const __half* xt;
  const float* psum;
  float* yacc;
  int* counters;
  __half* y;
  int64_t ldy;
};

/// This lane's W words of a chunk block at p (global memory, read once: streaming loads),
/// in the order of glvq_mma_layout.h.
template <int B, int KT>
__device__ __forceinline__ void load_words(const uint8_t* __restrict__ p, int lane,
                                           uint32_t (&w)[mma::words(B, KT)]) {
  constexpr int W = mma::words(B, KT);
#pragma unroll
  for (int q = 0; q < W / 4; ++q) {
    const uint4* s = reinterpret_cast<const uint4*>(p + q * 512) + lane;
    const uint4 v = __ldcs(s);
    w[4 * q + 0] = v.x;
    w[4 * q + 1] = v.y;
    w[4 * q + 2] = v.z;
    w[4 * q + 3] = v.w;
  }
  if constexpr (W % 4 >= 2) {
    const uint2* s = reinterpret_cast<const uint2*>(p + (W / 4) * 512) + lane;
    const uint2 v = __ldcs(s);
    w[(W / 4) * 4 + 0] = v.x;
    w[(W / 4) * 4 + 1] = v.y;
  }
  if constexpr (W % 2 == 1) {
    const unsigned* s = reinterpret_cast<const unsigned*>(p + (W / 4) * 512 + (W % 4 >= 2 ? 256 : 0)) + lane;
    w[W - 1] = __ldcs(s);
  }
}

/// The B fragments of KT tiles of the fragment-ordered activation, per batch half.
template <int KT, int NB>
__device__ __forceinline__ void load_x(const __half* __restrict__ x0, const __half* __restrict__ x1,
                                       uint2 (&xb)[KT][NB]) {
#pragma unroll
  for (int kt = 0; kt < KT; ++kt) {
    xb[kt][0] = __ldg(reinterpret_cast<const uint2*>(x0 + kt * 16));
    if constexpr (NB == 2) xb[kt][1] = __ldg(reinterpret_cast<const uint2*>(x1 + kt * 16));
  }
}

/// acc += codes(w) * xb over the KT tiles of one chunk of bit width B. A register is
/// its word shifted by slot_shift (shared by the registers of a word and variant, so the
/// compiler emits one shift per word and variant), then masked at the tile's class
/// position: SUB leaves the fp16 subnormal uz * 2^(B*cls) * 2^-24; else OR 1024 and
/// HSUB2 make z * 2^(B*cls) exactly. Tiles of class cls > 0 accumulate apart and are
/// folded in scaled by 2^-(B*cls) (exact) at the end.
template <int B, int KT, int NB, bool SUB>
__device__ __forceinline__ void mma_words(const uint32_t (&w)[mma::words(B, KT)], const uint2 (&xb)[KT][NB],
                                          float (&acc)[NB][4]) {
  constexpr int NC = mma::classes(B);
  float cacc[NC > 1 ? NC - 1 : 1][NB][4];
  if constexpr (NC > 1) {
#pragma unroll
    for (int c = 0; c < NC - 1; ++c)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int j = 0; j < 4; ++j) cacc[c][nb][j] = 0.0f;
  }
#pragma unroll
  for (int kt = 0; kt < KT; ++kt) {
    constexpr uint32_t kOne = ((1u << B) - 1u) * 0x00010001u;
    const int cls = mma::tile_class(B, kt);
    const uint32_t mask = kOne << (B * cls);
    // fp16 bits of 1024 + 2^(B-1) * 2^(B*cls) in both halves: (0x6400 | field) - that = z * 2^(B*cls)
    const uint32_t off = (0x6400u + ((1u << (B - 1)) << (B * cls))) * 0x00010001u;
    uint32_t a[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = 4 * kt + i;
      const uint32_t sh = w[mma::reg_word(B, r)] >> mma::slot_shift(B, mma::reg_slot(B, r));
      a[i] = SUB ? (sh & mask) : dev::hsub2_bits(dev::and_or(sh, mask, 0x64006400u), off);
    }
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      if (cls == 0)
        dev::mma_16816(acc[nb], a[0], a[1], a[2], a[3], xb[kt][nb].x, xb[kt][nb].y);
      else
        dev::mma_16816(cacc[cls > 0 ? cls - 1 : 0][nb], a[0], a[1], a[2], a[3], xb[kt][nb].x, xb[kt][nb].y);
    }
  }
  if constexpr (NC > 1) {
#pragma unroll
    for (int c = 1; c < NC; ++c) {
      const float f = 1.0f / float(1u << (B * c));
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[nb][j] = fmaf(cacc[c - 1][nb][j], f, acc[nb][j]);
    }
  }
}

/// Split-K reduction, the constant part of t = z + 1/2 (SUB: of t = uz - 2^(b-1) + 1/2)
/// and the fp16 store of one warp's 16-row tile.
template <int NB, bool SUB>
__device__ __forceinline__ void finish_tile(const Args& a, float (&acc)[NB][4], int64_t mt, int lane) {
  const int gid = lane >> 2, t4 = lane & 3;
  const int64_t rbase = mt * 16 + gid;
  if (SUB) {
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[nb][j] *= 0x1p24f;  // exact
  }
  if (a.splits > 1) {
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int n = nb * 8 + 2 * t4 + (j & 1);
        if (n < a.batch) atomicAdd(&a.yacc[n * a.out_pad + rbase + (j >> 1) * 8], acc[nb][j]);
      }
    __threadfence();
    __syncwarp();
    int last = 0;
    if (lane == 0) last = atomicAdd(&a.counters[mt], 1) == a.splits - 1;
    last = __shfl_sync(0xffffffffu, last, 0);
    if (!last) return;
    __threadfence();
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int n = nb * 8 + 2 * t4 + (j & 1);
        if (n < a.batch) {
          float* p = &a.yacc[n * a.out_pad + rbase + (j >> 1) * 8];
          acc[nb][j] = __ldcg(p);
          *p = 0.0f;
        }
      }
    if (lane == 0) a.counters[mt] = 0;
  }
  float cst[NB][2];
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) cst[nb][0] = cst[nb][1] = 0.0f;
  const int chunks_per_group = a.chunks / a.groups;
  for (int n = 0; n < a.batch; ++n) {
    float s = 0.0f;
    for (int g = lane; g < a.groups; g += 32) {
      const float ps = __ldg(a.psum + int64_t(n) * a.groups + g);
      if (SUB) {
        const int b = __ldg(a.cbits + g * chunks_per_group);
        s += (0.5f - float(1 << (b - 1))) * ps;
      } else {
        s += 0.5f * ps;
      }
    }
    s = dev::warp_sum(s);
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int q = 0; q < 2; ++q)
        if (nb * 8 + 2 * t4 + q == n) cst[nb][q] = s;
  }
#pragma unroll
  for (int nb = 0; nb < NB; ++nb)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = nb * 8 + 2 * t4 + (j & 1);
      const int64_t row = rbase + (j >> 1) * 8;
      if (n < a.batch && row < a.out) a.y[n * a.ldy + row] = __float2half_rn(acc[nb][j] + cst[nb][j & 1]);
    }
}

/// F<B>() for the run-time bit width b (1..8).
template <typename F>
__device__ __forceinline__ void by_bits(int b, F&& f) {
  switch (b) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

/// Register kernel: U consecutive chunks of bit width B (contiguous at cp) loaded together, then used.
template <int B, int KT, int NB, int U, bool SUB>
__device__ __forceinline__ void reg_chunks(const uint8_t* __restrict__ cp, const __half* x0, const __half* x1,
                                           int lane, float (&acc)[NB][4]) {
  constexpr int W = mma::words(B, KT);
  uint32_t w[U][W];
#pragma unroll
  for (int u = 0; u < U; ++u) load_words<B, KT>(cp + u * W * 128, lane, w[u]);
  uint2 xb[U][KT][NB];
#pragma unroll
  for (int u = 0; u < U; ++u) load_x<KT, NB>(x0 + u * KT * 16, x1 + u * KT * 16, xb[u]);
#pragma unroll
  for (int u = 0; u < U; ++u) mma_words<B, KT, NB, SUB>(w[u], xb[u], acc);
}

template <int KT, int NB, int MAXU, bool SUB>
__global__ void __launch_bounds__(kThreads) gemv_reg_kernel(Args a) {
  const int lane = threadIdx.x & 31;
  const int64_t mt = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (mt >= a.row_tiles) return;
  const int c0 = blockIdx.y * a.chunks_per_split;
  const int c1 = min(a.chunks, c0 + a.chunks_per_split);
  const int gid = lane >> 2, t4 = lane & 3;
  const int n0 = min(gid, a.batch - 1), n1 = min(gid + 8, a.batch - 1);
  float acc[NB][4] = {};
  const uint8_t* tile = a.packed + mt * a.row_tile_bytes;
  const __half* x0 = a.xt + int64_t(n0) * a.in + 4 * t4;
  const __half* x1 = a.xt + int64_t(n1) * a.in + 4 * t4;
  {
    // codes do not depend on the activation transform: pull the first two chunks into L2
    // while it may still run (programmatic dependent launch), then wait for xt and psum
    const int64_t lo = __ldg(a.coff + c0), hi = __ldg(a.coff + min(c0 + 2, c1));
    for (int64_t o = lo + lane * 128; o < hi; o += 32 * 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(tile + o));
    dev::pdl_wait();
  }
  for (int c = c0; c < c1;) {
    const int b = __ldg(a.cbits + c);
    const int64_t xo = int64_t(c) * 16 * KT;
    const uint8_t* cp = tile + __ldg(a.coff + c);
    const bool pair = MAXU >= 2 && c + 1 < c1 && __ldg(a.cbits + c + 1) == b;
    by_bits(b, [&](auto bc) {
      constexpr int B = decltype(bc)::value;
      if (pair)
        reg_chunks<B, KT, NB, MAXU >= 2 ? 2 : 1, SUB>(cp, x0 + xo, x1 + xo, lane, acc);
      else
        reg_chunks<B, KT, NB, 1, SUB>(cp, x0 + xo, x1 + xo, lane, acc);
    });
    c += pair ? 2 : 1;
  }
  finish_tile<NB, SUB>(a, acc, mt, lane);
}

}  // namespace mma_gemv
}  // namespace glvq
