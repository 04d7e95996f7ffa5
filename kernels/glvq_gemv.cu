// Fused GLVQ decode-GEMV: the straightforward kernel on the checkpoint layout and the
// tensor-core kernel on the mma layout (see glvq_gemv.cuh and glvq_mma_layout.h).
#include <algorithm>

#include "glvq_device.cuh"
#include "glvq_gemv.cuh"
#include "glvq_gemv_mma.cuh"

namespace glvq {
namespace {

constexpr int kMaxBatch = 16;
constexpr int kMaxDim = 64;

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// --------------------------------------------------------------------------------------
// Split-K results: y[n, r] = yacc[n, r] (ACCUMULATE: y[n, r] + yacc[n, r]), then yacc back to zero.
__global__ void finalize_kernel(float* __restrict__ yacc, int64_t out_pad, int64_t out, int batch,
                                __half* __restrict__ y, int64_t ldy, bool accumulate) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= out * batch) return;
  const int64_t n = i / out, r = i - n * out;
  float* a = yacc + n * out_pad + r;
  const float prev = accumulate ? __half2float(y[n * ldy + r]) : 0.0f;
  y[n * ldy + r] = __float2half_rn(prev + *a);
  *a = 0.0f;
}

// --------------------------------------------------------------------------------------
// Straightforward fused kernel: a block stages G and x for `cg` groups in shared memory;
// each warp takes 4 rows, its lanes walk the rows' d-vectors, decode them and multiply.
// A narrower last group has fewer vectors per row; x is staged as 0 past `in`, so the
// padded coordinates of its last vector add nothing.
constexpr int kNaiveThreads = 256;
constexpr int kNaiveRowsPerWarp = 4;
constexpr int kNaiveRows = kNaiveThreads / 32 * kNaiveRowsPerWarp;

struct NaiveArgs {
  GlvqLayout L;
  GlvqDeviceParams p;
  const uint8_t* codes;
  const __half* x;
  int64_t ldx;
  int batch, cg;
  float* yacc;
  int64_t out_pad;
};

template <int D>
__global__ void __launch_bounds__(kNaiveThreads) gemv_naive_kernel(NaiveArgs a) {
  const int d = D > 0 ? D : a.L.dim;
  constexpr int DA = D > 0 ? D : kMaxDim;
  const int gs = a.L.group_size;
  const int V = gs / d;
  const int g0 = blockIdx.y * a.cg;
  const int ng = min(a.cg, int(a.L.groups()) - g0);
  // lanes on different groups must not hit the same banks: rows 16-byte aligned for
  // float4 reads (D % 4 == 0), groups 4 banks apart; an odd stride for the generic path
  const int gstride = D > 0 ? d * d + 4 : d * d + 1;
  extern __shared__ float sm[];
  float* Gs = sm;                       // cg * gstride
  float* xs = Gs + a.cg * gstride;      // batch * cg * gs
  float* cs = xs + a.batch * a.cg * gs; // cg * 3: s, s/mu, log2(1+mu)
  for (int k = threadIdx.x; k < ng * d * d; k += blockDim.x) {
    const int gl = k / (d * d), e = k - gl * d * d;
    Gs[gl * gstride + e] = a.p.G[int64_t(g0 + gl) * d * d + e];
  }
  for (int k = threadIdx.x; k < a.batch * ng * gs; k += blockDim.x) {
    const int n = k / (ng * gs), c = k - n * ng * gs;
    const int64_t col = int64_t(g0) * gs + c;
    xs[n * a.cg * gs + c] = col < a.L.in ? __half2float(a.x[n * a.ldx + col]) : 0.0f;
  }
  for (int gl = threadIdx.x; gl < ng; gl += blockDim.x) {
    const dev::ExpandConst ec = dev::expand_const(a.p.scale[g0 + gl], a.p.mu[g0 + gl]);
    cs[gl * 3 + 0] = ec.s;
    cs[gl * 3 + 1] = ec.s_mu;
    cs[gl * 3 + 2] = ec.log2_mu;
  }
  __syncthreads();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int rr = 0; rr < kNaiveRowsPerWarp; ++rr) {
    const int64_t r = int64_t(blockIdx.x) * kNaiveRows + warp * kNaiveRowsPerWarp + rr;
    if (r >= a.L.out) break;
    float acc[kMaxBatch];
#pragma unroll
    for (int n = 0; n < kMaxBatch; ++n) acc[n] = 0.0f;
    for (int vi = lane; vi < ng * V; vi += 32) {
      const int gl = vi / V, v = vi - gl * V, g = g0 + gl;
      const int Vg = int(a.L.group_vecs(g));
      if (v >= Vg) continue;  // past the end of a narrower last group
      const int b = a.p.bits[g];
      const uint8_t* src = a.codes + a.p.group_offsets[g] + (r * Vg + v) * ((d * b + 7) >> 3);
      float t[DA];
      dev::load_code_values<D>(src, d, b, t);
      const dev::ExpandConst ec{cs[gl * 3 + 0], cs[gl * 3 + 1], cs[gl * 3 + 2]};
      const float* Gg = Gs + gl * gstride;
      const float* xg = xs + gl * gs + v * d;
#pragma unroll
      for (int i = 0; i < d; ++i) {
        const float w = dev::fast_expand(dev::row_dot<D>(Gg + i * d, t, d), ec);
#pragma unroll
        for (int n = 0; n < kMaxBatch; ++n)
          if (n < a.batch) acc[n] = fmaf(w, xg[n * a.cg * gs + i], acc[n]);
      }
    }
#pragma unroll
    for (int n = 0; n < kMaxBatch; ++n) {
      if (n < a.batch) {
        const float s = dev::warp_sum(acc[n]);
        if (lane == 0) atomicAdd(&a.yacc[n * a.out_pad + r], s);
      }
    }
  }
}

template <int D>
cudaError_t launch_naive(const NaiveArgs& a, cudaStream_t stream) {
  const int d = a.L.dim, gs = a.L.group_size;
  const size_t smem = sizeof(float) * (size_t(a.cg) * (d * d + 4) + size_t(a.batch) * a.cg * gs + a.cg * 3);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(gemv_naive_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  dim3 grid(unsigned((a.L.out + kNaiveRows - 1) / kNaiveRows), unsigned((a.L.groups() + a.cg - 1) / a.cg));
  gemv_naive_kernel<D><<<grid, kNaiveThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

// --------------------------------------------------------------------------------------
// mma path, step 1: xt = s_g G_g^T x per d-vector, in fragment order, and per-group sums.
constexpr int kXformThreads = 128;

__global__ void __launch_bounds__(kXformThreads) xform_kernel(const __half* __restrict__ x, int64_t ldx, int64_t in,
                                                              int d, int gs, int groups, const float* __restrict__ G,
                                                              const float* __restrict__ scale, __half* __restrict__ xt,
                                                              float* __restrict__ psum) {
  dev::pdl_launch_dependents();  // the GEMV may start its prologue; it waits for xt below
  const int g = blockIdx.x, n = blockIdx.y;
  extern __shared__ float sm[];
  float* Gs = sm;      // d*d
  float* xs = sm + d * d;  // gs
  for (int k = threadIdx.x; k < d * d; k += blockDim.x) Gs[k] = G[int64_t(g) * d * d + k];
  for (int c = threadIdx.x; c < gs; c += blockDim.x) xs[c] = __half2float(x[n * ldx + int64_t(g) * gs + c]);
  __syncthreads();
  const float s = scale[g];
  float part = 0.0f;
  for (int c = threadIdx.x; c < gs; c += blockDim.x) {
    const int v = c / d, k = c - v * d;
    float acc = 0.0f;
    for (int i = 0; i < d; ++i) acc = fmaf(Gs[i * d + k], xs[v * d + i], acc);
    const __half h = __float2half_rn(acc * s);
    xt[n * in + mma::xt_pos(int64_t(g) * gs + c)] = h;
    part += __half2float(h);
  }
  __shared__ float red[kXformThreads / 32];
  part = dev::warp_sum(part);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = part;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.0f;
    for (int w = 0; w < kXformThreads / 32; ++w) t += red[w];
    psum[int64_t(n) * groups + g] = t;
  }
}

using mma_gemv::kThreads;
using mma_gemv::kWarps;

/// Resident blocks per multiprocessor of `kernel`, cached in `cache` (one entry per device).
template <typename K>
int blocks_per_sm(K kernel, int (&cache)[16]) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 16) dev = 0;
  int& nb = cache[dev];
  if (nb == 0 && (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, kernel, kThreads, 0) != cudaSuccess || nb < 1))
    nb = 1;
  return nb;
}

template <int KT, int NB>
cudaError_t launch_mma_kt(mma_gemv::Args a, const GlvqGemvTuning& tune, cudaStream_t stream) {
  auto kernel = tune.unroll >= 2 ? (tune.subnormal ? mma_gemv::gemv_reg_kernel<KT, NB, 2, true>
                                                  : mma_gemv::gemv_reg_kernel<KT, NB, 2, false>)
                                 : (tune.subnormal ? mma_gemv::gemv_reg_kernel<KT, NB, 1, true>
                                                  : mma_gemv::gemv_reg_kernel<KT, NB, 1, false>);
  const int64_t row_blocks = (a.row_tiles + kWarps - 1) / kWarps;
  int splits = tune.splits;
  if (splits <= 0) {
    // As many K splits as fit in one wave of resident blocks: a partial second wave
    // would run at low occupancy (the kernel is latency-bound), and more splits only
    // add split-K reduction work.
    static const int sms = glvq_sm_count();
    static int occ[2][2][16] = {};  // per instantiation <KT, NB>, per unroll, per code form, per device
    const int per_sm = std::min(blocks_per_sm(kernel, occ[tune.unroll >= 2 ? 1 : 0][tune.subnormal ? 1 : 0]),
                                std::max(1, tune.warps_per_sm / kWarps));
    splits = int(std::max<int64_t>(1, int64_t(per_sm) * sms / row_blocks));
    splits = std::min(splits, std::max(1, a.chunks / 2));  // a warp with one chunk cannot pair loads
  }
  splits = std::min(splits, std::min(a.chunks, 65535));
  a.chunks_per_split = (a.chunks + splits - 1) / splits;
  a.splits = (a.chunks + a.chunks_per_split - 1) / a.chunks_per_split;  // no empty split
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(unsigned(row_blocks), unsigned(a.splits));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = tune.pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, a);
}

template <int NB>
cudaError_t launch_mma(const mma_gemv::Args& a, int kt, const GlvqGemvTuning& tune, cudaStream_t stream) {
  switch (kt) {
    case 1: return launch_mma_kt<1, NB>(a, tune, stream);
    case 2: return launch_mma_kt<2, NB>(a, tune, stream);
    case 4: return launch_mma_kt<4, NB>(a, tune, stream);
    case 8: return launch_mma_kt<8, NB>(a, tune, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

// --------------------------------------------------------------------------------------
int glvq_sm_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 132;
  return n;
}

size_t glvq_gemv_workspace_bytes(const GlvqLayout& L, int max_batch) {
  const int64_t mt = (L.out + 15) / 16;
  return size_t(round_up(int64_t(max_batch) * glvq_gemv_xt_cols(L) * 2, 256) + round_up(int64_t(max_batch) * L.groups() * 4, 256) +
                round_up(int64_t(max_batch) * mt * 16 * 4, 256) + round_up(mt * 4, 256));
}

cudaError_t glvq_gemv_workspace_init(const GlvqLayout& L, int max_batch, void* base, GlvqGemvWorkspace* ws,
                                     cudaStream_t stream) {
  if (max_batch < 1 || max_batch > kMaxBatch || reinterpret_cast<uintptr_t>(base) % 256) return cudaErrorInvalidValue;
  const int64_t mt = (L.out + 15) / 16;
  char* p = static_cast<char*>(base);
  ws->xt = reinterpret_cast<__half*>(p);
  p += round_up(int64_t(max_batch) * glvq_gemv_xt_cols(L) * 2, 256);
  ws->psum = reinterpret_cast<float*>(p);
  p += round_up(int64_t(max_batch) * L.groups() * 4, 256);
  ws->yacc = reinterpret_cast<float*>(p);
  p += round_up(int64_t(max_batch) * mt * 16 * 4, 256);
  ws->counters = reinterpret_cast<int*>(p);
  ws->max_batch = max_batch;
  return cudaMemsetAsync(base, 0, glvq_gemv_workspace_bytes(L, max_batch), stream);
}

namespace {

cudaError_t naive_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, const __half* x,
                         int64_t ldx, __half* y, int64_t ldy, int batch, const GlvqGemvWorkspace& ws,
                         cudaStream_t stream, bool accumulate) {
  if (batch < 1 || batch > ws.max_batch || L.dim < 1 || L.dim > kMaxDim || L.group_size % L.dim || L.in < 1 ||
      L.out < 1 || ldx < L.in || ldy < L.out)
    return cudaErrorInvalidValue;
  NaiveArgs a{L, p, codes, x, ldx, batch, 0, ws.yacc, round_up(L.out, 16)};
  // about 512 columns a block, fewer when G or x would not fit in shared memory
  a.cg = std::max(1, 512 / L.group_size);
  auto smem = [&](int cg) {
    return sizeof(float) * (size_t(cg) * (L.dim * L.dim + 4) + size_t(batch) * cg * L.group_size + cg * 3);
  };
  while (a.cg > 1 && smem(a.cg) > 160 * 1024) a.cg /= 2;
  if (smem(a.cg) > 200 * 1024 || (L.groups() + a.cg - 1) / a.cg > 65535) return cudaErrorInvalidValue;
  cudaError_t e;
  switch (L.dim) {
    case 4: e = launch_naive<4>(a, stream); break;
    case 8: e = launch_naive<8>(a, stream); break;
    case 16: e = launch_naive<16>(a, stream); break;
    case 32: e = launch_naive<32>(a, stream); break;
    default: e = launch_naive<0>(a, stream); break;
  }
  if (e != cudaSuccess) return e;
  const int64_t n = L.out * batch;
  finalize_kernel<<<unsigned((n + 255) / 256), 256, 0, stream>>>(ws.yacc, a.out_pad, L.out, batch, y, ldy,
                                                                  accumulate);
  return cudaGetLastError();
}

}  // namespace

cudaError_t glvq_gemv_naive_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                                   const __half* x, int64_t ldx, __half* y, int64_t ldy, int batch,
                                   const GlvqGemvWorkspace& ws, cudaStream_t stream) {
  return naive_launch(L, p, codes, x, ldx, y, ldy, batch, ws, stream, /*accumulate=*/false);
}

cudaError_t glvq_gemv_tail_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                                  const __half* x, int64_t ldx, __half* y, int64_t ldy, int batch,
                                  const GlvqGemvWorkspace& ws, cudaStream_t stream) {
  if (L.full_groups() || L.groups() < 2) return cudaErrorInvalidValue;
  const int64_t last = L.groups() - 1, d2 = int64_t(L.dim) * L.dim;
  // The last group as a one-group layer: its columns, its parameters; the group
  // offsets stay absolute (bytes from CODES), so only the pointers move.
  GlvqLayout T = L;
  T.in = L.group_cols(last);
  GlvqDeviceParams q = p;
  q.bits = p.bits + last;
  q.scale = p.scale + last;
  q.mu = p.mu + last;
  q.G = p.G + last * d2;
  q.Ginv = p.Ginv ? p.Ginv + last * d2 : nullptr;
  q.group_offsets = p.group_offsets + last;
  return naive_launch(T, q, codes, x + last * L.group_size, ldx, y, ldy, batch, ws, stream, /*accumulate=*/true);
}

GlvqMmaDevice glvq_mma_device(const GlvqMmaPlan& P, const uint8_t* packed, const int64_t* chunk_offsets,
                              const uint8_t* chunk_bits) {
  GlvqMmaDevice M;
  M.packed = packed;
  M.chunk_offsets = chunk_offsets;
  M.chunk_bits = chunk_bits;
  M.out = P.out;
  M.in = P.in;
  M.row_tiles = P.row_tiles;
  M.row_tile_bytes = P.row_tile_bytes;
  M.chunks = P.chunks;
  M.dim = P.dim;
  M.group_size = P.group_size;
  M.kt = P.kt;
  return M;
}

cudaError_t glvq_gemv_mma_launch(const GlvqMmaDevice& M, const GlvqDeviceParams& p, const __half* x, int64_t ldx,
                                 __half* y, int64_t ldy, int batch, const GlvqGemvWorkspace& ws,
                                 cudaStream_t stream, const GlvqGemvTuning& tune) {
  if (batch < 1 || batch > ws.max_batch || M.group_size % 16 || M.in % M.group_size || ldx < M.in ||
      ldy < M.out || M.chunks < 1 || M.chunks > (int64_t(1) << 30) || M.row_tiles > (int64_t(65535) * kWarps))
    return cudaErrorInvalidValue;
  const int groups = int(M.in / M.group_size);
  if (groups > 65535) return cudaErrorInvalidValue;
  const size_t xsmem = sizeof(float) * (size_t(M.dim) * M.dim + M.group_size);
  if (xsmem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(xform_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(xsmem));
    if (e != cudaSuccess) return e;
  }
  xform_kernel<<<dim3(unsigned(groups), unsigned(batch)), kXformThreads, xsmem, stream>>>(
      x, ldx, M.in, M.dim, M.group_size, groups, p.G, p.scale, ws.xt, ws.psum);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;

  mma_gemv::Args a{M.packed, M.chunk_offsets, M.chunk_bits, M.row_tiles, M.row_tile_bytes, M.out, round_up(M.out, 16),
                   M.in,     int(M.chunks),   0,            0,           groups,           batch,  ws.xt,
                   ws.psum,  ws.yacc,         ws.counters,  y,           ldy};
  return batch <= 8 ? launch_mma<1>(a, M.kt, tune, stream) : launch_mma<2>(a, M.kt, tune, stream);
}

}  // namespace glvq
