#pragma once
// Shared by the GLVQ kernel tests: random layers (seeded), device buffers, and a
// host emulation of the tensor-core GEMV that reads the mma layout lane by lane
// the way the kernel does (so a layout bug shows up without a GPU).
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common/cuda_check.h"
#include "glvq_device_params.h"
#include "glvq_mma_layout.h"
#include "quant/glvq_codec.h"

namespace glvq {
namespace test {

/// A quantized layer with every array on the host.
struct Layer {
  GlvqLayout L;
  std::vector<uint8_t> bits;
  std::vector<float> scale, mu, G, Ginv;
  std::vector<int64_t> off;
  std::vector<float> W;  ///< the original weights [out, in]
  std::vector<uint8_t> codes;
  GlvqGroupParams view() const { return {bits.data(), scale.data(), mu.data(), G.data(), Ginv.data()}; }
};

inline std::vector<float> invert(const std::vector<float>& A, int d) {
  std::vector<double> M(size_t(d) * 2 * d, 0.0);
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < d; ++j) M[i * 2 * d + j] = A[i * d + j];
    M[i * 2 * d + d + i] = 1.0;
  }
  for (int c = 0; c < d; ++c) {
    int p = c;
    for (int r = c + 1; r < d; ++r)
      if (std::fabs(M[r * 2 * d + c]) > std::fabs(M[p * 2 * d + c])) p = r;
    for (int j = 0; j < 2 * d; ++j) std::swap(M[c * 2 * d + j], M[p * 2 * d + j]);
    const double piv = M[c * 2 * d + c];
    for (int j = 0; j < 2 * d; ++j) M[c * 2 * d + j] /= piv;
    for (int r = 0; r < d; ++r) {
      if (r == c) continue;
      const double f = M[r * 2 * d + c];
      for (int j = 0; j < 2 * d; ++j) M[r * 2 * d + j] -= f * M[c * 2 * d + j];
    }
  }
  std::vector<float> inv(size_t(d) * d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) inv[i * d + j] = float(M[i * 2 * d + d + j]);
  return inv;
}

/// bits and mu are per group, repeated cyclically. Weights ~ N(0, 0.05), with a few
/// outliers that clamp; G = step (I + N(0, 0.15)) so codes spread over the b-bit range.
inline Layer make_layer(uint32_t seed, GlvqLayout L, const std::vector<uint8_t>& bits, const std::vector<float>& mu) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> us(0.05f, 0.2f);
  Layer y;
  y.L = L;
  const int d = L.dim;
  for (int64_t g = 0; g < L.groups(); ++g) {
    y.bits.push_back(bits[g % bits.size()]);
    y.mu.push_back(mu[g % mu.size()]);
    y.scale.push_back(us(rng));
    const float step = 2.0f / float(1 << y.bits.back());
    std::vector<float> G(size_t(d) * d);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) G[i * d + j] = step * ((i == j ? 1.0f : 0.0f) + 0.15f * nd(rng));
    const std::vector<float> Gi = invert(G, d);
    y.G.insert(y.G.end(), G.begin(), G.end());
    y.Ginv.insert(y.Ginv.end(), Gi.begin(), Gi.end());
  }
  y.W.resize(size_t(L.out) * L.in);
  for (auto& w : y.W) w = 0.05f * nd(rng);
  for (size_t i = 0; i < y.W.size(); i += 97) y.W[i] *= 8.0f;
  y.off = glvq_group_offsets(L, y.bits.data());
  y.codes.assign(y.off.back(), 0);
  glvq_encode_ref(L, y.view(), y.W.data(), y.codes.data());
  return y;
}

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

/// A device array of n T's.
template <typename T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  DevBuf() = default;
  explicit DevBuf(size_t count) : n(count) { CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T))); }
  explicit DevBuf(const std::vector<T>& h) : DevBuf(h.size()) { upload(h); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  void upload(const std::vector<T>& h) { CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice)); }
  std::vector<T> download() const {
    std::vector<T> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

/// A Layer's parameters and codes on the device.
struct DevLayer {
  DevBuf<uint8_t> bits, codes;
  DevBuf<float> scale, mu, G, Ginv;
  DevBuf<int64_t> off;
  explicit DevLayer(const Layer& y)
      : bits(y.bits), codes(y.codes), scale(y.scale), mu(y.mu), G(y.G), Ginv(y.Ginv), off(y.off) {}
  GlvqDeviceParams params() const {
    GlvqDeviceParams p;
    p.bits = bits.p;
    p.scale = scale.p;
    p.mu = mu.p;
    p.G = G.p;
    p.Ginv = Ginv.p;
    p.group_offsets = off.p;
    return p;
  }
};

inline uint16_t half_bits(float v) {
  const __half_raw r = __float2half_rn(v);
  return r.x;
}
inline float half_value(uint16_t b) {
  __half_raw r;
  r.x = b;
  return __half2float(__half(r));
}

/// n values of N(0, 1), each exactly representable in fp16 (activations for the GEMV tests).
inline std::vector<float> random_x(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = half_value(half_bits(nd(rng)));
  return x;
}

inline std::vector<__half> to_half(const std::vector<float>& v) {
  std::vector<__half> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = __float2half_rn(v[i]);
  return h;
}

/// The transformed activation the mma path uses, in column order (not fragment order),
/// rounded to fp16: xt[n, g*gs + v*d + k] = fp16(s_g sum_i G_g[i][k] x[n, g*gs + v*d + i]).
inline std::vector<float> transformed_x(const Layer& y, const std::vector<float>& x, int batch) {
  const GlvqLayout& L = y.L;
  const int d = L.dim;
  std::vector<float> xt(size_t(batch) * L.in);
  for (int n = 0; n < batch; ++n)
    for (int64_t c = 0; c < L.in; ++c) {
      const int64_t g = c / L.group_size, v = (c % L.group_size) / d, k = c % d;
      double acc = 0;
      for (int i = 0; i < d; ++i)
        acc += double(y.G[g * d * d + i * d + k]) * x[n * L.in + g * L.group_size + v * d + i];
      xt[n * L.in + c] = half_value(half_bits(float(acc * y.scale[g])));
    }
  return xt;
}

/// The codes the kernel's registers hold, decoded from the packed bytes lane by lane
/// exactly as the kernel does (word offsets, slots, the fp16 magic 0x6400 | code minus
/// 1024 + 2^(b-1)): z [out_pad, in] as floats.
inline std::vector<float> emulate_unpack(const GlvqMmaPlan& P, const std::vector<uint8_t>& packed) {
  const int64_t out_pad = P.row_tiles * 16;
  std::vector<float> z(size_t(out_pad) * P.in, NAN);
  for (int64_t mt = 0; mt < P.row_tiles; ++mt)
    for (int64_t c = 0; c < P.chunks; ++c) {
      const int b = P.chunk_bits[c], W = mma::words(b, P.kt);
      const uint8_t* blk = packed.data() + mt * P.row_tile_bytes + P.chunk_offsets[c];
      for (int lane = 0; lane < 32; ++lane) {
        std::vector<uint32_t> w(W);
        for (int j = 0; j < W; ++j) std::memcpy(&w[j], blk + mma::word_offset(j, W, lane), 4);
        for (int r = 0; r < 4 * P.kt; ++r) {
          const uint32_t mask = ((1u << b) - 1u) * 0x00010001u;
          const uint32_t v = ((w[mma::reg_word(b, r)] >> (b * mma::reg_slot(b, r))) & mask) | 0x64006400u;
          const float off = 1024.0f + float(1 << (b - 1));
          // A fragment of m16n8k16 (PTX ISA): reg i holds row gid (+8 if i odd), cols 2 t4 (+8 if i >= 2)
          const int gid = lane >> 2, t4 = lane & 3, i = r % 4;
          const int64_t row = mt * 16 + gid + ((i & 1) ? 8 : 0);
          const int64_t col = c * 16 * P.kt + (r / 4) * 16 + 2 * t4 + ((i & 2) ? 8 : 0);
          z[row * P.in + col] = half_value(uint16_t(v & 0xffffu)) - off;
          z[row * P.in + col + 1] = half_value(uint16_t(v >> 16)) - off;
        }
      }
    }
  return z;
}

/// Fragment-ordered xt as the device buffer holds it: B fragment of m16n8k16 (PTX ISA):
/// lane t4 holds k = 2 t4, 2 t4 + 1 (reg 0) and 2 t4 + 8, 2 t4 + 9 (reg 1).
inline std::vector<float> to_fragment_order(const std::vector<float>& xt, int64_t in, int batch) {
  std::vector<float> f(xt.size());
  for (int n = 0; n < batch; ++n)
    for (int64_t tile = 0; tile < in / 16; ++tile)
      for (int t4 = 0; t4 < 4; ++t4) {
        const int64_t base = n * in + tile * 16;
        f[base + 4 * t4 + 0] = xt[base + 2 * t4];
        f[base + 4 * t4 + 1] = xt[base + 2 * t4 + 1];
        f[base + 4 * t4 + 2] = xt[base + 2 * t4 + 8];
        f[base + 4 * t4 + 3] = xt[base + 2 * t4 + 9];
      }
  return f;
}

/// y[n, r] = sum_c z[r, c] xt[n, c] + 1/2 sum_c xt[n, c], in double.
inline std::vector<double> emulate_gemv(const GlvqMmaPlan& P, const std::vector<float>& z,
                                        const std::vector<float>& xt, int batch) {
  std::vector<double> y(size_t(batch) * P.out);
  for (int n = 0; n < batch; ++n) {
    double half_sum = 0;
    for (int64_t c = 0; c < P.in; ++c) half_sum += 0.5 * xt[n * P.in + c];
    for (int64_t r = 0; r < P.out; ++r) {
      double acc = half_sum;
      for (int64_t c = 0; c < P.in; ++c) acc += double(z[r * P.in + c]) * xt[n * P.in + c];
      y[n * P.out + r] = acc;
    }
  }
  return y;
}

}  // namespace test
}  // namespace glvq
