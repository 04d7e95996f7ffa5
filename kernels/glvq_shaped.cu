// The shaped code's encoder, one warp per row (glvq_shaped.cuh says what it
// computes). Lanes split each book's points and keep their own K best; the warp then
// merges them by (distance, code). The CPU scans the points in ascending order with
// strict comparisons, which ranks equal distances by point index, and a point's index
// is the high part of its code: the merged list is the CPU's list, in its order.
#include <cmath>
#include <mutex>
#include <vector>

#include "glvq_device.cuh"
#include "glvq_math.h"
#include "glvq_shaped.cuh"
#include "glvq_topk.h"
#include "quant/glvq_codebook_tables.h"

namespace glvq {
namespace {

constexpr int kWarps = 8;
constexpr int kMaxD = 64;
constexpr int kMaxK = kTopKMax;
constexpr int kP2 = cbt::kBook2Patterns;
constexpr unsigned kAll = 0xffffffffu;

// The tables as floats, coordinate-major (lanes read consecutive points: no bank
// conflicts once in shared memory); filled once per device.
__device__ float g_book2[8 * kP2];
__device__ float g_book1[8 * 256];
__device__ uint8_t g_parity[kP2];
__constant__ float c_beta[8][4];  // cbt::kStageBeta: the stage scales of each width

struct Books {
  float b2[8][kP2];
  float b1[8][256];
  uint8_t par[kP2];
};
struct WarpScratch {
  unsigned long long list_c[kMaxK];
  float list_d[kMaxK];
  float u[kMaxD], y[kMaxD], c[kMaxD], e[kMaxD];
};
constexpr size_t kSmem = sizeof(Books) + kWarps * sizeof(WarpScratch);

__device__ void decode2(const Books& S, uint32_t k, float* c) {
  const uint32_t i = k >> 6, s = k & 63u, par = S.par[i];
  uint32_t sign = (s & 7u) | ((s >> 3) << 4);
  const uint32_t lo = ((s & 1u) ^ ((s >> 1) & 1u) ^ ((s >> 2) & 1u)) ^ (par & 1u);
  const uint32_t hi = (((s >> 3) & 1u) ^ ((s >> 4) & 1u) ^ ((s >> 5) & 1u)) ^ ((par >> 1) & 1u);
  sign |= (lo << 3) | (hi << 7);
  for (int j = 0; j < 8; ++j) c[j] = ((sign >> j) & 1u) ? -S.b2[j][i] : S.b2[j][i];
}

__device__ void decode_book(const Books& S, int book, uint32_t k, float* c) {
  if (book == 2) {
    decode2(S, k, c);
  } else {
    for (int j = 0; j < 8; ++j) c[j] = S.b1[j][k];
  }
}

/// glvq_shaped_decode: the stages summed with fmaf from 0, stage 0 first.
__device__ void decode_stages(const Books& S, int stages, const int* book, const float* beta,
                              unsigned long long code, float* c) {
  for (int j = 0; j < 8; ++j) c[j] = 0.0f;
  float v[8];
  int shift = 0;
  for (int s = 0; s < stages; ++s) {
    const int nb = 8 * book[s];
    decode_book(S, book[s], uint32_t((code >> shift) & ((1ull << nb) - 1ull)), v);
    for (int j = 0; j < 8; ++j) c[j] = fp::fma(beta[s], v[j], c[j]);
    shift += nb;
  }
}

__device__ void decode_full(const Books& S, const GlvqShapedPanel& p, unsigned long long code, float* c) {
  decode_stages(S, p.stages, p.book, p.beta, code, c);
}

__device__ float dist2(const float* y, const float* c) {
  float d = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float e = fp::sub(y[j], c[j]);
    d = fp::add(d, fp::mul(e, e));
  }
  return d;
}

/// The lane's share of the 2-bit book's points (the CPU's kbest2, point by point).
__device__ void lane_kbest2(const Books& S, const float* y, TopK& top, int lane) {
  float ay[8];
  uint32_t neg = 0;
  for (int j = 0; j < 8; ++j) {
    ay[j] = fp::abs(y[j]);
    neg |= uint32_t(y[j] < 0.0f) << j;
  }
  const uint32_t par = (__popc(neg & 15u) & 1u) | ((__popc(neg >> 4) & 1u) << 1);
  for (int i = lane; i < kP2; i += 32) {
    float a[8];
    for (int j = 0; j < 8; ++j) a[j] = S.b2[j][i];
    float dist = 0.0f;
    for (int j = 0; j < 8; ++j) {
      const float e = fp::sub(ay[j], a[j]);
      dist = fp::add(dist, fp::mul(e, e));
    }
    float pen[2];
    for (int h = 0; h < 2; ++h) {
      pen[h] = fp::mul(fp::mul(ay[4 * h], a[4 * h]), 4.0f);
      for (int j = 4 * h + 1; j < 4 * h + 4; ++j) {
        const float q = fp::mul(fp::mul(ay[j], a[j]), 4.0f);
        pen[h] = q < pen[h] ? q : pen[h];
      }
    }
    const uint32_t mism = par ^ S.par[i];
    float d = dist;
    if (mism & 1u) d = fp::add(d, pen[0]);
    if (mism & 2u) d = fp::add(d, pen[1]);
    if (!(d < top.worst())) continue;
    uint32_t sign = neg;
    for (int h = 0; h < 2; ++h) {
      if (!((mism >> h) & 1u)) continue;
      int jm = 4 * h;  // the first coordinate reaching the half's least penalty
      while (jm < 4 * h + 3 && fp::mul(fp::mul(ay[jm], a[jm]), 4.0f) != pen[h]) ++jm;
      sign ^= 1u << jm;
    }
    const uint32_t free = (sign & 7u) | (((sign >> 4) & 7u) << 3);
    top.add(d, (static_cast<unsigned long long>(i) << 6) | free);
  }
}

__device__ void lane_kbest1(const Books& S, const float* y, TopK& top, int lane) {
  for (int i = lane; i < 256; i += 32) {
    float dist = 0.0f;
    for (int j = 0; j < 8; ++j) {
      const float e = fp::sub(y[j], S.b1[j][i]);
      dist = fp::add(dist, fp::mul(e, e));
    }
    top.add(dist, static_cast<unsigned long long>(i));
  }
}

/// The warp's K best points of BOOK for y (shared), ascending (distance, code), into
/// ws.list_*; every lane returns their count.
__device__ int warp_kbest(const Books& S, WarpScratch& ws, int book, const float* y, int K, int lane) {
  TopK t(K);
  if (book == 2) {
    lane_kbest2(S, y, t, lane);
  } else {
    lane_kbest1(S, y, t, lane);
  }
  __syncwarp();  // the lanes may still read the previous list
  int h = 0, n = 0;
  for (; n < K; ++n) {
    float d = h < t.n ? t.d[h] : INFINITY;
    unsigned long long c = h < t.n ? static_cast<unsigned long long>(t.c[h]) : ~0ull;
    for (int o = 16; o > 0; o >>= 1) {
      const float d2 = __shfl_xor_sync(kAll, d, o);
      const unsigned long long c2 = __shfl_xor_sync(kAll, c, o);
      if (d2 < d || (d2 == d && c2 < c)) {
        d = d2;
        c = c2;
      }
    }
    if (!(d < INFINITY)) break;  // every lane's list is used up (lists never hold inf)
    if (h < t.n && static_cast<unsigned long long>(t.c[h]) == c) ++h;  // codes are unique within a search: the owner moves on
    if (lane == 0) {
      ws.list_d[n] = d;
      ws.list_c[n] = c;
    }
  }
  __syncwarp();
  return n;
}

/// glvq_shaped_candidates: the K best first-stage points, each completed greedily through
/// the later stages. Lane m < n gets candidate m in *mine; returns n.
__device__ int warp_candidates(const Books& S, WarpScratch& ws, const GlvqShapedPanel& p, const float* y, int K,
                               unsigned long long* mine, int lane) {
  const int n = warp_kbest(S, ws, p.book[0], y, K, lane);
  const unsigned long long first = lane < n ? ws.list_c[lane] : 0ull;
  *mine = first;
  for (int m = 0; p.stages > 1 && m < n; ++m) {
    unsigned long long code = __shfl_sync(kAll, first, m);
    float c[8], v[8], r[8];
    decode_book(S, p.book[0], uint32_t(code), c);
    int shift = 8 * p.book[0];
    for (int s = 1; s < p.stages; ++s) {
      for (int j = 0; j < 8; ++j) r[j] = fp::div(fp::sub(y[j], c[j]), p.beta[s]);
      // r is the same in every lane; the search reads it from the warp's scratch
      __syncwarp();
      if (lane < 8) ws.e[lane] = r[lane];
      __syncwarp();
      warp_kbest(S, ws, p.book[s], ws.e, 1, lane);
      const unsigned long long b = ws.list_c[0];
      code |= b << shift;
      decode_book(S, p.book[s], uint32_t(b), v);
      for (int j = 0; j < 8; ++j) c[j] = fp::fma(p.beta[s], v[j], c[j]);
      shift += 8 * p.book[s];
    }
    if (lane == m) *mine = code;
  }
  __syncwarp();
  return n;
}

/// (y - c')^T M (y - c') in double, c' = the vector's codewords with sub-vector k
/// replaced by CK: the CPU's score(), operation by operation (no contraction).
__device__ double metric_score(const double* M, const float* y, const float* c, int k, const float* ck, int d) {
  double e[kMaxD];
  for (int i = 0; i < d; ++i) {
    const float ci = (i >> 3) == k ? ck[i & 7] : c[i];
    e[i] = __dsub_rn(double(y[i]), double(ci));
  }
  double q = 0;
  for (int i = 0; i < d; ++i) {
    double mi = 0;
    for (int j = 0; j < d; ++j) mi = __dadd_rn(mi, __dmul_rn(M[i * d + j], e[j]));
    q = __dadd_rn(q, __dmul_rn(e[i], mi));
  }
  return q;
}

__device__ void load_books(Books& S) {
  for (int k = threadIdx.x; k < 8 * kP2; k += blockDim.x) (&S.b2[0][0])[k] = g_book2[k];
  for (int k = threadIdx.x; k < 8 * 256; k += blockDim.x) (&S.b1[0][0])[k] = g_book1[k];
  for (int k = threadIdx.x; k < kP2; k += blockDim.x) S.par[k] = g_parity[k];
}

__global__ void __launch_bounds__(kWarps * 32) shaped_panel_kernel(GlvqShapedPanel p) {
  extern __shared__ __align__(16) unsigned char smem[];
  Books& S = *reinterpret_cast<Books*>(smem);
  load_books(S);
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  WarpScratch& ws = reinterpret_cast<WarpScratch*>(smem + sizeof(Books))[warp];
  const int64_t r = int64_t(blockIdx.x) * kWarps + warp;
  if (r >= p.rows) return;
  const int d = p.d, sub = d / 8;
  const bool rescore = p.M != nullptr && p.candidates > 1;
  const int Kc = rescore ? (p.candidates > p.beam ? p.candidates : p.beam) : p.beam;
  float* T = p.T + r * p.ld;
  unsigned long long mine[kMaxD / 8], chosen[kMaxD / 8];
  int ncand[kMaxD / 8];
  for (int64_t a = p.p0; a < p.p1; a += d) {
    for (int i = lane; i < d; i += 32) ws.u[i] = fp::div(T[a + i], p.scale);
    __syncwarp();
    for (int i = lane; i < d; i += 32) {
      float acc = 0.0f;
      for (int j = 0; j < d; ++j) acc = fp::fma(__ldg(p.Ginv + i * d + j), ws.u[j], acc);
      ws.y[i] = acc;
    }
    __syncwarp();
    // The codec's nearest per sub-vector (among the first beam candidates), and the
    // candidates the metric rescores.
    for (int k = 0; k < sub; ++k) {
      const float* yk = ws.y + 8 * k;
      ncand[k] = warp_candidates(S, ws, p, yk, Kc, &mine[k], lane);
      const int nb = ncand[k] < p.beam ? ncand[k] : p.beam;
      float dm = INFINITY;
      if (lane < nb) {
        float c[8];
        decode_full(S, p, mine[k], c);
        dm = dist2(yk, c);
      }
      unsigned long long best = 0;
      float best_d = INFINITY;
      for (int m = 0; m < nb; ++m) {
        const float dd = __shfl_sync(kAll, dm, m);
        const unsigned long long cc = __shfl_sync(kAll, mine[k], m);
        if (dd < best_d) {
          best_d = dd;
          best = cc;
        }
      }
      chosen[k] = best;
      if (lane == 0) decode_full(S, p, best, ws.c + 8 * k);
      __syncwarp();
    }
    if (rescore) {
      const double* M = p.M + ((a - p.p0) / d) * d * d;
      for (int k = 0; k < sub; ++k) {
        const int n = ncand[k] < p.candidates ? ncand[k] : p.candidates;
        double q = 0;
        if (lane <= n) {  // lane m < n scores candidate m, lane n the current codewords
          float ck[8];
          if (lane < n) {
            decode_full(S, p, mine[k], ck);
          } else {
            for (int j = 0; j < 8; ++j) ck[j] = ws.c[8 * k + j];
          }
          q = metric_score(M, ws.y, ws.c, k, ck, d);
        }
        double best = __shfl_sync(kAll, q, n);
        int sel = -1;
        for (int m = 0; m < n; ++m) {
          const double qm = __shfl_sync(kAll, q, m);
          if (qm < best) {
            best = qm;
            sel = m;
          }
        }
        __syncwarp();
        if (sel >= 0) {
          chosen[k] = __shfl_sync(kAll, mine[k], sel);
          if (lane == 0) decode_full(S, p, chosen[k], ws.c + 8 * k);
        }
        __syncwarp();
      }
    }
    for (int i = lane; i < d; i += 32) {
      float acc = 0.0f;
      for (int j = 0; j < d; ++j) acc = fp::fma(__ldg(p.G + i * d + j), ws.c[j], acc);
      const float w = fp::mul(p.scale, acc);
      p.W_hat[r * p.ld + a + i] = w;
      p.C[r * p.ld + a + i] = ws.c[i];
      ws.e[i] = fp::sub(T[a + i], w);
    }
    for (int k = 0; k < sub; ++k)
      if (lane == k) p.codes[r * (p.ld / 8) + a / 8 + k] = static_cast<int64_t>(chosen[k]);
    __syncwarp();
    if (p.F != nullptr) {  // LDLQ inside the panel: the later columns take this vector's error
      for (int64_t j = a + d + lane; j < p.p1; j += 32) {
        float acc = 0.0f;
        for (int k = 0; k < d; ++k) acc = fp::fma(ws.e[k], __ldg(p.F + (a + k) * p.ldF + j), acc);
        T[j] = fp::sub(T[j], acc);
      }
    }
    __syncwarp();
  }
}

constexpr int kDecodeThreads = 256;

/// glvq_decode_ref for a shaped layer: the codewords of each vector's sub-codes, then
/// w_i = expand(sum_j G_ij t_j) with fmaf, j ascending; a padded last vector stores
/// only its real coordinates.
template <typename T>
__global__ void __launch_bounds__(kDecodeThreads) shaped_decode_kernel(GlvqLayout L, GlvqDeviceParams p,
                                                                        const uint8_t* __restrict__ codes,
                                                                        T* __restrict__ W, int64_t ldw) {
  extern __shared__ __align__(16) unsigned char smem[];
  Books& S = *reinterpret_cast<Books*>(smem);
  float* Gs = reinterpret_cast<float*>(smem + sizeof(Books));
  const int d = L.dim;
  const int64_t g = blockIdx.y;
  load_books(S);
  for (int k = threadIdx.x; k < d * d; k += blockDim.x) Gs[k] = p.G[g * d * d + k];
  __syncthreads();
  const int64_t V = L.group_vecs(g);
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= L.out * V) return;
  const int64_t r = idx / V, v = idx - r * V;
  const int64_t left = L.group_cols(g) - v * d;
  const int n = left < d ? int(left) : d;
  const int b = p.bits[g];
  int stages = 0, book[4];
  for (int w = b; w > 0; w -= 2) book[stages++] = w >= 2 ? 2 : 1;
  const float s = p.scale[g], mu = p.mu[g], Lc = fp::compand_log(mu);
  const uint8_t* src = codes + p.group_offsets[g] + idx * (int64_t(d) * b / 8);
  float t[kMaxD];
  for (int k = 0; k < d / 8; ++k) {
    unsigned long long code = 0;
    for (int i = 0; i < b; ++i) code |= static_cast<unsigned long long>(src[b * k + i]) << (8 * i);
    decode_stages(S, stages, book, c_beta[b - 1], code, t + 8 * k);
  }
  T* dst = W + r * ldw + g * L.group_size + v * d;
  for (int i = 0; i < n; ++i) {
    float u = 0.0f;
    for (int j = 0; j < d; ++j) u = fp::fma(Gs[i * d + j], t[j], u);
    dst[i] = dev::from_float<T>(fp::expand(u, s, mu, Lc));
  }
}

std::mutex g_tables_mutex;
bool g_tables_ready[64] = {};

cudaError_t ensure_tables() {
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  if (dev < 0 || dev >= 64) return cudaErrorInvalidDevice;
  std::lock_guard<std::mutex> lock(g_tables_mutex);
  if (g_tables_ready[dev]) return cudaSuccess;
  std::vector<float> b2(8 * kP2), b1(8 * 256);
  std::vector<uint8_t> par(kP2);
  for (int i = 0; i < kP2; ++i) {
    for (int j = 0; j < 8; ++j) b2[j * kP2 + i] = float(cbt::kBook2Abs[i][j]) / 256.0f;
    par[i] = cbt::kBook2Parity[i];
  }
  for (int i = 0; i < 256; ++i)
    for (int j = 0; j < 8; ++j) b1[j * 256 + i] = float(cbt::kBook1[i][j]) / 256.0f;
  if ((e = cudaMemcpyToSymbol(g_book2, b2.data(), b2.size() * sizeof(float))) != cudaSuccess) return e;
  if ((e = cudaMemcpyToSymbol(g_book1, b1.data(), b1.size() * sizeof(float))) != cudaSuccess) return e;
  if ((e = cudaMemcpyToSymbol(g_parity, par.data(), par.size())) != cudaSuccess) return e;
  if ((e = cudaMemcpyToSymbol(c_beta, cbt::kStageBeta, sizeof(cbt::kStageBeta))) != cudaSuccess) return e;
  e = cudaFuncSetAttribute(shaped_panel_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmem));
  if (e != cudaSuccess) return e;
  const int decode_smem = int(sizeof(Books) + sizeof(float) * kMaxD * kMaxD);
  for (auto k : {reinterpret_cast<const void*>(shaped_decode_kernel<float>),
                 reinterpret_cast<const void*>(shaped_decode_kernel<__half>),
                 reinterpret_cast<const void*>(shaped_decode_kernel<__nv_bfloat16>)})
    if ((e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, decode_smem)) != cudaSuccess)
      return e;
  g_tables_ready[dev] = true;
  return cudaSuccess;
}

template <typename T>
cudaError_t decode(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, T* W, int64_t ldw,
                   cudaStream_t stream) {
  if (L.code != GlvqCode::shaped || L.dim % 8 || L.dim < 8 || L.dim > kMaxD || L.group_size % L.dim ||
      L.in < 1 || L.groups() > 65535 || ldw < L.in)
    return cudaErrorInvalidValue;
  cudaError_t e = ensure_tables();
  if (e != cudaSuccess) return e;
  const int64_t n = L.out * L.vecs_per_row();
  const dim3 grid(unsigned((n + kDecodeThreads - 1) / kDecodeThreads), unsigned(L.groups()));
  const size_t smem = sizeof(Books) + sizeof(float) * L.dim * L.dim;
  shaped_decode_kernel<T><<<grid, kDecodeThreads, smem, stream>>>(L, p, codes, W, ldw);
  return cudaGetLastError();
}

}  // namespace

cudaError_t glvq_shaped_encode_panel(const GlvqShapedPanel& p, cudaStream_t stream) {
  const bool ok = p.d % 8 == 0 && p.d >= 8 && p.d <= kMaxD && p.candidates >= 1 && p.candidates <= kMaxK &&
                  p.beam >= 1 && p.beam <= kMaxK && p.stages >= 1 && p.stages <= 4 && p.p0 >= 0 && p.p0 < p.p1 &&
                  p.p1 <= p.ld && (p.p1 - p.p0) % p.d == 0 && p.p0 % 8 == 0 && p.ld % 8 == 0 && p.rows >= 1 &&
                  p.G && p.Ginv && p.T && p.C && p.W_hat && p.codes;
  if (!ok) return cudaErrorInvalidValue;
  cudaError_t e = ensure_tables();
  if (e != cudaSuccess) return e;
  const unsigned blocks = unsigned((p.rows + kWarps - 1) / kWarps);
  shaped_panel_kernel<<<blocks, kWarps * 32, kSmem, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t glvq_shaped_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, float* W,
                                      int64_t ldw, cudaStream_t stream) {
  return decode(L, p, codes, W, ldw, stream);
}
cudaError_t glvq_shaped_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                                      __half* W, int64_t ldw, cudaStream_t stream) {
  return decode(L, p, codes, W, ldw, stream);
}
cudaError_t glvq_shaped_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                                      __nv_bfloat16* W, int64_t ldw, cudaStream_t stream) {
  return decode(L, p, codes, W, ldw, stream);
}

}  // namespace glvq
