// Fused decode-GEMV for the shaped code (glvq_gemv_shaped.cuh says what it computes).
//
// Work split: a warp owns a tile of 16 rows and walks the chunks of its K split; in a
// chunk, lane (gid = lane / 4, t = lane % 4) decodes sub-codes 4t..4t+3 of rows gid and
// gid + 8, which are exactly the A fragments of eight m16n8k16 products whose k index
// runs over those coordinates (k 2t, 2t+1 <-> coordinates 4h, 4h+1 of a sub-code half h;
// k 2t+8, 2t+9 <-> 4h+2, 4h+3); the B fragments are the same coordinates of xt for batch
// row gid (and gid + 8). The four lanes of a row read 4 * 4b contiguous bytes.
//
// Two versions of the tile loop (GlvqShapedTuning::version, compared by bench_glvq_gemv_shaped):
// 1 loads a chunk's codes when it decodes them, so every chunk waits for memory; 2 loads the
// next chunk's codes while decoding this one (codes of <= 4 bits; wider ones load in place),
// has no bounds checks in full chunks of full row tiles, and keeps two accumulator chains.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <vector>

#include "glvq_device.cuh"
#include "glvq_gemv_shaped.cuh"
#include "glvq_gemv_shaped_decode.cuh"
#include "quant/glvq_codebook_tables.h"

namespace glvq {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kChunkSubs = 16;  // sub-codes per chunk
constexpr int kXformThreads = 128;
using shaped::Books;
using shaped::c_beta_h;
using shaped::decode_sub;
using shaped::kP2;
using shaped::sub_of;

// The books (shaped::Books) in global memory; each GEMV block copies them to shared memory.
__device__ uint4 g_book2h[kP2];
__device__ uint4 g_book1h[256];

std::mutex g_mutex;
std::atomic<bool> g_ready[64] = {};

uint16_t half_bits(float v) {
  const __half h = __float2half_rn(v);
  uint16_t u;
  memcpy(&u, &h, 2);
  return u;
}

uint4 pack8(const uint16_t* h) {
  uint4 r;
  r.x = h[0] | uint32_t(h[1]) << 16;
  r.y = h[2] | uint32_t(h[3]) << 16;
  r.z = h[4] | uint32_t(h[5]) << 16;
  r.w = h[6] | uint32_t(h[7]) << 16;
  return r;
}

cudaError_t ensure_books() {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (dev < 0 || dev >= 64) return cudaErrorInvalidDevice;
  if (g_ready[dev].load()) return cudaSuccess;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_ready[dev].load()) return cudaSuccess;
  std::vector<uint4> b2(kP2), b1(256);
  uint16_t h[8];
  for (int i = 0; i < kP2; ++i) {
    for (int j = 0; j < 8; ++j) h[j] = half_bits(float(cbt::kBook2Abs[i][j]) / 256.0f);  // exact in fp16
    h[3] |= uint16_t((cbt::kBook2Parity[i] & 1u) << 15);
    h[7] |= uint16_t(((cbt::kBook2Parity[i] >> 1) & 1u) << 15);
    b2[i] = pack8(h);
  }
  for (int i = 0; i < 256; ++i) {
    for (int j = 0; j < 8; ++j) h[j] = half_bits(float(cbt::kBook1[i][j]) / 256.0f);
    b1[i] = pack8(h);
  }
  if ((e = cudaMemcpyToSymbol(g_book2h, b2.data(), sizeof(uint4) * kP2)) != cudaSuccess) return e;
  if ((e = cudaMemcpyToSymbol(g_book1h, b1.data(), sizeof(uint4) * 256)) != cudaSuccess) return e;
  if ((e = cudaMemcpyToSymbol(c_beta_h, cbt::kStageBeta, sizeof(cbt::kStageBeta))) != cudaSuccess) return e;
  g_ready[dev].store(true);
  return cudaSuccess;
}

/// A chunk of the work list (glvq_shaped_gemv_chunks): where its codes start, the group's
/// row stride, its size and width, and its first column of xt.
struct Chunk {
  uint32_t base;    ///< byte of row 0's first sub-code in the layer's codes
  uint32_t stride;  ///< bytes per row of the group
  uint32_t meta;    ///< sub-codes n (bits 0-7), width B (8-11), 4-byte aligned lanes (12)
  uint32_t xcol;    ///< first column of xt
  __device__ int n() const { return int(meta & 0xffu); }
  __device__ int bits() const { return int((meta >> 8) & 15u); }
  __device__ bool aligned() const { return (meta >> 12) & 1u; }
};
static_assert(sizeof(Chunk) == 4 * sizeof(int32_t), "a chunk is four ints of the work list");

__device__ __forceinline__ Chunk load_chunk(const int32_t* chunks, int c) {
  const int4 v = __ldg(reinterpret_cast<const int4*>(chunks) + c);
  return Chunk{uint32_t(v.x), uint32_t(v.y), uint32_t(v.z), uint32_t(v.w)};
}

struct Args {
  const uint8_t* codes;
  const int32_t* chunks;  // version 1's work list
  const int32_t* work;    // version 2's (Chunk)
  const int64_t* off;
  const uint8_t* bits;
  const __half* xt;
  int64_t xt_ld;  // halves per batch row of xt
  int64_t out, out_pad, row_tiles;
  int nchunks, chunks_per_split, splits, batch, subs_per_group;  // subs_per_group = gs / 8
  float* yacc;
  int* counters;
  __half* y;
  int64_t ldy;
};

/// Loads the lane's 4 sub-codes of row r (4 * b bytes, b = the chunk's width, at most
/// MAXB) as little-endian words; zeros for rows past the end and sub-codes past the chunk.
template <int MAXB>
__device__ __forceinline__ void load_words(const Args& a, const Chunk& ch, int b, int t, int64_t r, uint32_t* w) {
#pragma unroll
  for (int i = 0; i < MAXB; ++i) w[i] = 0;
  const int n = ch.n();
  if (r >= a.out || 4 * t >= n) return;
  const uint8_t* src = a.codes + ch.base + r * int64_t(ch.stride) + 4 * t * b;
  if (ch.aligned()) {
    const uint32_t* s32 = reinterpret_cast<const uint32_t*>(src);
#pragma unroll
    for (int i = 0; i < MAXB; ++i)
      if (i < b) w[i] = __ldg(s32 + i);
  } else {
    const int nb = min(4, n - 4 * t) * b;  // bytes of the lane's valid sub-codes
#pragma unroll
    for (int i = 0; i < 4 * MAXB; ++i)  // constant indices: w stays in registers
      if (i < nb) w[i >> 2] |= uint32_t(__ldg(src + i)) << (8 * (i & 3));
  }
}

/// The B fragments of a chunk: xt at the lane's 4 sub-codes for its batch rows (zero past n).
template <int NB>
__device__ __forceinline__ void load_xt(const Args& a, const Chunk& ch, int t, const int* nrow, uint4 (&xb)[NB][4]) {
  const int n = ch.n();
#pragma unroll
  for (int nb = 0; nb < NB; ++nb)
#pragma unroll
    for (int j = 0; j < 4; ++j)
      xb[nb][j] = 4 * t + j < n
                      ? __ldg(reinterpret_cast<const uint4*>(a.xt + nrow[nb] * a.xt_ld + ch.xcol + 32 * t) + j)
                      : make_uint4(0, 0, 0, 0);
}

/// acc += the chunk's products: sub-codes j of rows r0 (w0) and r1 (w1) against xb.
/// FULL: every sub-code and both rows exist (no checks). ACC1 takes coordinates 4-7 when
/// it is another chain than ACC0.
template <int B, bool FULL, int NB>
__device__ __forceinline__ void mma_chunk(const Books& S, const uint32_t* w0, const uint32_t* w1, const uint4 (&xb)[NB][4],
                                          bool ok0, bool ok1, int t, int n, float (&acc0)[NB][4],
                                          float (&acc1)[NB][4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    uint4 A0 = make_uint4(0, 0, 0, 0), A1 = A0;
    if (FULL) {
      A0 = decode_sub<B>(S, sub_of<B>(w0, j));
      A1 = decode_sub<B>(S, sub_of<B>(w1, j));
    } else if (4 * t + j < n) {
      if (ok0) A0 = decode_sub<B>(S, sub_of<B>(w0, j));
      if (ok1) A1 = decode_sub<B>(S, sub_of<B>(w1, j));
    }
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      dev::mma_16816(acc0[nb], A0.x, A1.x, A0.y, A1.y, xb[nb][j].x, xb[nb][j].y);  // coordinates 0-3
      dev::mma_16816(acc1[nb], A0.z, A1.z, A0.w, A1.w, xb[nb][j].z, xb[nb][j].w);  // coordinates 4-7
    }
  }
}

/// Calls F with the chunk width B as a compile-time constant (up to 4 unless WIDE).
template <bool WIDE = true, typename F>
__device__ __forceinline__ void with_bits(int b, F&& f) {
  if constexpr (!WIDE) {
    switch (b) {
      case 1: f(std::integral_constant<int, 1>{}); break;
      case 2: f(std::integral_constant<int, 2>{}); break;
      case 3: f(std::integral_constant<int, 3>{}); break;
      default: f(std::integral_constant<int, 4>{}); break;
    }
    return;
  }
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

/// The tile's split-K share: ACC into the workspace; the last split to arrive writes y.
template <int NB>
__device__ __forceinline__ void finish_tile(const Args& a, int64_t mt, float (&acc)[NB][4]) {
  const int lane = threadIdx.x & 31;
  const int gid = lane >> 2, t = lane & 3;
  // acc[nb][j]: row gid (j < 2) or gid + 8 (j >= 2), batch row nb * 8 + 2t + (j & 1)
  const int64_t rbase = mt * 16 + gid;
  if (a.splits > 1) {
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int nn = nb * 8 + 2 * t + (j & 1);
        if (nn < a.batch) atomicAdd(&a.yacc[nn * a.out_pad + rbase + (j >> 1) * 8], acc[nb][j]);
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
        const int nn = nb * 8 + 2 * t + (j & 1);
        if (nn < a.batch) {
          float* p = &a.yacc[nn * a.out_pad + rbase + (j >> 1) * 8];
          acc[nb][j] = __ldcg(p);
          *p = 0.0f;
        }
      }
    if (lane == 0) a.counters[mt] = 0;
  }
#pragma unroll
  for (int nb = 0; nb < NB; ++nb)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int nn = nb * 8 + 2 * t + (j & 1);
      const int64_t r = rbase + (j >> 1) * 8;
      if (nn < a.batch && r < a.out) a.y[nn * a.ldy + r] = __float2half_rn(acc[nb][j]);
    }
}

/// Version 1: loads the lane's 4 sub-codes of row r in chunk (g, u0, n): 4B bytes as B words.
template <int B>
__device__ __forceinline__ void load_blob(const Args& a, int g, int u0, int n, bool aligned, int t, int64_t r,
                                          int64_t subs_row, uint32_t* w) {
#pragma unroll
  for (int i = 0; i < B; ++i) w[i] = 0;
  if (r >= a.out || 4 * t >= n) return;
  const uint8_t* src = a.codes + __ldg(a.off + g) + (r * subs_row + u0 + 4 * t) * B;
  if (aligned) {
    const uint32_t* s32 = reinterpret_cast<const uint32_t*>(src);
#pragma unroll
    for (int i = 0; i < B; ++i) w[i] = __ldg(s32 + i);
  } else {
    const int nb = min(4, n - 4 * t) * B;  // bytes of the lane's valid sub-codes
#pragma unroll
    for (int i = 0; i < 4 * B; ++i)  // constant indices: w stays in registers
      if (i < nb) w[i >> 2] |= uint32_t(__ldg(src + i)) << (8 * (i & 3));
  }
}

/// Version 1: one 16-row tile over the chunks of this block's K split, loading each chunk's
/// group offset, width and codes when it is decoded; then its split-K share.
template <int NB>
__device__ __forceinline__ void tile_v1(const Args& a, const Books& S, int64_t mt) {
  if (mt >= a.row_tiles) return;
  const int lane = threadIdx.x & 31;
  const int gid = lane >> 2, t = lane & 3;
  const int64_t r0 = mt * 16 + gid, r1 = r0 + 8;
  const int c0 = blockIdx.y * a.chunks_per_split, c1 = min(a.nchunks, c0 + a.chunks_per_split);
  float acc[NB][4] = {};
  int nrow[NB];
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) nrow[nb] = min(nb * 8 + gid, a.batch - 1);
  for (int c = c0; c < c1; ++c) {
    const int4 ch = __ldg(reinterpret_cast<const int4*>(a.chunks) + c);
    const int g = ch.x, u0 = ch.y, n = ch.z & 0xffff;
    const bool aligned = ch.w != 0;
    const int b = __ldg(a.bits + g);
    const int64_t subs_row = (ch.z >> 16) & 0xffff;  // sub-codes per row of the group
    // B fragments: xt of this lane's 4 sub-codes (32 halves) for its batch rows
    const int64_t xcol = (int64_t(g) * a.subs_per_group + u0 + 4 * t) * 8;
    uint4 xb[NB][4];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int j = 0; j < 4; ++j)
        xb[nb][j] = 4 * t + j < n ? __ldg(reinterpret_cast<const uint4*>(a.xt + nrow[nb] * a.xt_ld + xcol) + j)
                                  : make_uint4(0, 0, 0, 0);
    auto run = [&](auto bc) {
      constexpr int B = decltype(bc)::value;
      uint32_t w0[B], w1[B];
      load_blob<B>(a, g, u0, n, aligned, t, r0, subs_row, w0);
      load_blob<B>(a, g, u0, n, aligned, t, r1, subs_row, w1);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint4 A0 = make_uint4(0, 0, 0, 0), A1 = A0;
        if (4 * t + j < n) {
          if (r0 < a.out) A0 = decode_sub<B>(S, sub_of<B>(w0, j));
          if (r1 < a.out) A1 = decode_sub<B>(S, sub_of<B>(w1, j));
        }
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) {
          dev::mma_16816(acc[nb], A0.x, A1.x, A0.y, A1.y, xb[nb][j].x, xb[nb][j].y);  // coordinates 0-3
          dev::mma_16816(acc[nb], A0.z, A1.z, A0.w, A1.w, xb[nb][j].z, xb[nb][j].w);  // coordinates 4-7
        }
      }
    };
    switch (b) {
      case 1: run(std::integral_constant<int, 1>{}); break;
      case 2: run(std::integral_constant<int, 2>{}); break;
      case 3: run(std::integral_constant<int, 3>{}); break;
      case 4: run(std::integral_constant<int, 4>{}); break;
      case 5: run(std::integral_constant<int, 5>{}); break;
      case 6: run(std::integral_constant<int, 6>{}); break;
      case 7: run(std::integral_constant<int, 7>{}); break;
      default: run(std::integral_constant<int, 8>{}); break;
    }
  }
  finish_tile<NB>(a, mt, acc);
}

/// What version 2 holds of a chunk ahead of decoding it.
struct Prefetched {
  Chunk ch;
  uint32_t w0[4], w1[4];  ///< the lane's codes of rows r0, r1 when the chunk is <= 4 bits wide
};

/// Version 2: as version 1, with the next chunk's codes in flight while this one decodes.
/// WIDE: chunks may be wider than 4 bits (loaded in place; their code costs 23 more
/// registers, so layers of at most 4 bits run the variant without it).
template <int NB, bool WIDE>
__device__ __forceinline__ void tile_v2(const Args& a, const Books& S, int64_t mt) {
  if (mt >= a.row_tiles) return;
  const int lane = threadIdx.x & 31;
  const int gid = lane >> 2, t = lane & 3;
  const int64_t r0 = mt * 16 + gid, r1 = r0 + 8;
  const bool rows_full = mt * 16 + 16 <= a.out;
  const int c0 = blockIdx.y * a.chunks_per_split, c1 = min(a.nchunks, c0 + a.chunks_per_split);
  float acc0[NB][4] = {}, acc1[NB][4] = {};
  int nrow[NB];
#pragma unroll
  for (int nb = 0; nb < NB; ++nb) nrow[nb] = min(nb * 8 + gid, a.batch - 1);
  auto fetch = [&](int c, Prefetched& P) {
    P.ch = load_chunk(a.work, c);
    const int b = P.ch.bits();
    if (b <= 4) {
      load_words<4>(a, P.ch, b, t, r0, P.w0);
      load_words<4>(a, P.ch, b, t, r1, P.w1);
    }
  };
  auto decode = [&](const Prefetched& P) {
    uint4 xb[NB][4];
    load_xt<NB>(a, P.ch, t, nrow, xb);
    const int n = P.ch.n();
    const bool full = rows_full && n == kChunkSubs;
    with_bits<WIDE>(P.ch.bits(), [&](auto bc) {
      constexpr int B = decltype(bc)::value;
      if constexpr (B <= 4) {
        if (full) mma_chunk<B, true, NB>(S, P.w0, P.w1, xb, true, true, t, n, acc0, acc1);
        else mma_chunk<B, false, NB>(S, P.w0, P.w1, xb, r0 < a.out, r1 < a.out, t, n, acc0, acc1);
      } else if constexpr (WIDE) {
        uint32_t w0[B], w1[B];
        load_words<B>(a, P.ch, B, t, r0, w0);
        load_words<B>(a, P.ch, B, t, r1, w1);
        mma_chunk<B, false, NB>(S, w0, w1, xb, r0 < a.out, r1 < a.out, t, n, acc0, acc1);
      }
    });
  };
  // two buffers used in turn: no register copies between iterations
  Prefetched P0, P1;
  if (c0 < c1) fetch(c0, P0);
  for (int c = c0; c < c1; c += 2) {
    if (c + 1 < c1) fetch(c + 1, P1);
    decode(P0);
    if (c + 1 >= c1) break;
    if (c + 2 < c1) fetch(c + 2, P0);
    decode(P1);
  }
#pragma unroll
  for (int nb = 0; nb < NB; ++nb)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc0[nb][j] += acc1[nb][j];
  finish_tile<NB>(a, mt, acc0);
}

/// VERSION 1 or 2; WIDE: some group is wider than 4 bits (version 2 only).
template <int NB, int VERSION, bool WIDE = true>
__global__ void __launch_bounds__(kThreads) shaped_gemv_kernel(Args a) {
  __shared__ Books S;
  for (int i = threadIdx.x; i < kP2; i += kThreads) S.b2[i] = g_book2h[i];
  for (int i = threadIdx.x; i < 256; i += kThreads) S.b1[i] = g_book1h[i];
  __syncthreads();
  dev::pdl_wait();  // xt comes from the transform launched before
  // blocks loop over row blocks: fewer, longer-lived blocks load the books fewer times
  for (int64_t rb = blockIdx.x; rb * kWarps < a.row_tiles; rb += gridDim.x) {
    const int64_t mt = rb * kWarps + (threadIdx.x >> 5);
    if constexpr (VERSION == 1) tile_v1<NB>(a, S, mt);
    else tile_v2<NB, WIDE>(a, S, mt);
  }
}

// xt[n, (g * gs/8 + u) * 8 + k] = s_g (G_g^T x_v)_k for every d-vector v of group g (x
// zero past `in`), one block per (group, batch row).
__global__ void __launch_bounds__(kXformThreads) shaped_xform_kernel(const __half* __restrict__ x, int64_t ldx,
                                                                     GlvqLayout L, const float* __restrict__ G,
                                                                     const float* __restrict__ scale,
                                                                     __half* __restrict__ xt, int64_t xt_ld) {
  dev::pdl_launch_dependents();
  const int g = blockIdx.x, n = blockIdx.y, d = L.dim, gs = L.group_size;
  const int cols = int(L.group_cols(g)), padded = int(L.group_vecs(g)) * d;
  extern __shared__ float sm[];
  float* Gs = sm;          // d*d
  float* xs = sm + d * d;  // padded
  for (int k = threadIdx.x; k < d * d; k += blockDim.x) Gs[k] = G[int64_t(g) * d * d + k];
  for (int c = threadIdx.x; c < padded; c += blockDim.x)
    xs[c] = c < cols ? __half2float(x[n * ldx + int64_t(g) * gs + c]) : 0.0f;
  __syncthreads();
  const float s = scale[g];
  for (int c = threadIdx.x; c < padded; c += blockDim.x) {
    const int v = c / d, k = c - v * d;
    float acc = 0.0f;
    for (int i = 0; i < d; ++i) acc = fmaf(Gs[i * d + k], xs[v * d + i], acc);
    xt[n * xt_ld + int64_t(g) * gs + c] = __float2half_rn(acc * s);
  }
}

/// Resident blocks per multiprocessor of KERNEL (cached per instantiation SLOT and device).
int resident_blocks(void (*kernel)(Args), int slot) {
  static int cache[6][64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) dev = 0;
  int& nb = cache[slot][dev];
  if (nb == 0 && (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, kernel, kThreads, 0) != cudaSuccess || nb < 1))
    nb = 1;
  return nb;
}

}  // namespace

cudaError_t glvq_gemv_shaped_prepare() { return ensure_books(); }

std::vector<int32_t> glvq_shaped_gemv_chunks(const GlvqLayout& L, const uint8_t* bits, const int64_t* offsets) {
  std::vector<int32_t> c;
  for (int64_t g = 0; g < L.groups(); ++g) {
    const int64_t subs = L.group_vecs(g) * L.dim / 8;
    for (int64_t u0 = 0; u0 < subs; u0 += kChunkSubs) {
      const int64_t n = std::min<int64_t>(kChunkSubs, subs - u0);
      // 32-bit words: the group's start, the row stride and the lane offsets all multiples of 4 bytes
      const bool aligned = n == kChunkSubs && offsets[g] % 4 == 0 && (subs * bits[g]) % 4 == 0;
      c.insert(c.end(), {int32_t(g), int32_t(u0), int32_t(n | (subs << 16)), aligned ? 1 : 0});
    }
  }
  return c;
}

std::vector<int32_t> glvq_shaped_gemv_work(const GlvqLayout& L, const uint8_t* bits, const int64_t* offsets) {
  std::vector<int32_t> c;
  for (int64_t g = 0; g < L.groups(); ++g) {
    const int64_t subs = L.group_vecs(g) * L.dim / 8, b = bits[g];
    for (int64_t u0 = 0; u0 < subs; u0 += kChunkSubs) {  // the chunks of glvq_shaped_gemv_chunks, in order
      const int64_t n = std::min<int64_t>(kChunkSubs, subs - u0), base = offsets[g] + u0 * b;
      const bool aligned = n == kChunkSubs && base % 4 == 0 && (subs * b) % 4 == 0;
      const uint32_t meta = uint32_t(n) | uint32_t(b) << 8 | uint32_t(aligned) << 12;
      const int64_t xcol = (g * (L.group_size / 8) + u0) * 8;
      c.insert(c.end(), {int32_t(uint32_t(base)), int32_t(subs * b), int32_t(meta), int32_t(xcol)});
    }
  }
  return c;
}

int glvq_shaped_max_bits(const GlvqLayout& L, const uint8_t* bits) {
  int m = 0;
  for (int64_t g = 0; g < L.groups(); ++g) m = std::max(m, int(bits[g]));
  return m;
}

std::string glvq_gemv_shaped_unsupported(const GlvqLayout& L, const uint8_t* bits, const float* mu) {
  if (L.code != GlvqCode::shaped) return "not the shaped code";
  if (L.dim % 8 || L.dim < 8 || L.group_size % L.dim) return "dimension not a multiple of 8";
  if (L.group_size / 8 > 0xffff || L.groups() > 65535) return "groups too wide or too many";
  int64_t bytes = 0;
  for (int64_t g = 0; g < L.groups(); ++g) {
    if (mu[g] != 0.0f) return "companding (mu > 0)";
    if (bits[g] < 1 || bits[g] > 8) return "bits outside 1..8";
    bytes += L.out * (L.group_vecs(g) * L.dim / 8) * bits[g];
  }
  // the work list addresses codes with 32-bit offsets and xt columns with 31 bits
  if (bytes > int64_t(UINT32_MAX) || glvq_gemv_xt_cols(L) > INT32_MAX) return "codes over 4 GiB";
  return "";
}

cudaError_t glvq_gemv_shaped_launch(const GlvqShapedDevice& M, const GlvqDeviceParams& p, const __half* x, int64_t ldx,
                                    __half* y, int64_t ldy, int batch, const GlvqGemvWorkspace& ws,
                                    cudaStream_t stream, const GlvqShapedTuning& tune) {
  const GlvqLayout& L = M.L;
  if (tune.version < 1 || tune.version > 2 || (tune.version == 1 ? !p.group_offsets || !p.bits : !M.work) || batch < 1 || batch > ws.max_batch || batch > 16 || L.code != GlvqCode::shaped || L.dim % 8 || L.dim < 8 ||
      L.dim > 64 || L.group_size % L.dim || L.in < 1 || L.out < 1 || ldx < L.in || ldy < L.out || M.nchunks < 1 ||
      M.nchunks > (int64_t(1) << 30) || M.max_bits < 1 || M.max_bits > 8 || L.groups() > 65535 || !M.codes || !M.chunks)
    return cudaErrorInvalidValue;
  // the books are copied to the device on first use, which a graph capture cannot hold:
  // glvq_gemv_shaped_prepare() before capturing
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  cudaError_t e = cudaStreamIsCapturing(stream, &capture);
  if (e != cudaSuccess) return e;
  if (capture == cudaStreamCaptureStatusNone && (e = ensure_books()) != cudaSuccess) return e;
  const int64_t xt_ld = glvq_gemv_xt_cols(L);
  const size_t xsmem = sizeof(float) * (size_t(L.dim) * L.dim + L.group_size);
  if (xsmem > 48 * 1024 &&
      (e = cudaFuncSetAttribute(shaped_xform_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(xsmem))) !=
          cudaSuccess)
    return e;
  shaped_xform_kernel<<<dim3(unsigned(L.groups()), unsigned(batch)), kXformThreads, xsmem, stream>>>(
      x, ldx, L, p.G, p.scale, ws.xt, xt_ld);
  if ((e = cudaGetLastError()) != cudaSuccess) return e;

  Args a{M.codes, M.chunks, M.work, p.group_offsets, p.bits, ws.xt, xt_ld, L.out, (L.out + 15) / 16 * 16,
         (L.out + 15) / 16, int(M.nchunks), 0, 0, batch, L.group_size / 8, ws.yacc, ws.counters, y, ldy};
  const int64_t row_blocks = (a.row_tiles + kWarps - 1) / kWarps;
  // one wave of resident blocks: K splits first (each block then loops over row blocks)
  static const int sms = glvq_sm_count();
  const int slot = (batch <= 8 ? 0 : 1) + (tune.version == 1 ? 2 : M.max_bits <= 4 ? 4 : 0);
  static void (*const kernels[6])(Args) = {shaped_gemv_kernel<1, 2>,        shaped_gemv_kernel<2, 2>,
                                           shaped_gemv_kernel<1, 1>,        shaped_gemv_kernel<2, 1>,
                                           shaped_gemv_kernel<1, 2, false>, shaped_gemv_kernel<2, 2, false>};
  const auto kernel = kernels[slot];
  const int per_sm = std::min(resident_blocks(kernel, slot), std::max(1, tune.warps_per_sm / kWarps));
  const int64_t wave = int64_t(per_sm) * sms;
  int splits = tune.splits;
  if (splits <= 0) {
    splits = int(std::max<int64_t>(1, wave / row_blocks));
    splits = std::min(splits, std::max(1, a.nchunks / 2));  // at least two chunks a warp
  }
  splits = std::min(splits, std::min(a.nchunks, 65535));
  a.chunks_per_split = (a.nchunks + splits - 1) / splits;
  a.splits = (a.nchunks + a.chunks_per_split - 1) / a.chunks_per_split;
  const int64_t gx = std::min<int64_t>(row_blocks, std::max<int64_t>(1, wave / a.splits));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(gx), unsigned(a.splits));
  cfg.blockDim = dim3(kThreads);
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = tune.pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, a);
}

}  // namespace glvq
