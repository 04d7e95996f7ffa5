// Plain CPU reference of the GLVQ code format (the spec is glvq_codec.h); the
// scalar arithmetic lives in kernels/glvq_math.h so that the CUDA kernels run
// exactly the same float operations.
#include "quant/glvq_codec.h"

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "kernels/glvq_math.h"
#include "quant/glvq_codebook.h"

namespace glvq {
namespace {

void check_layout(const GlvqLayout& L) {
  GLVQ_CHECK(L.out > 0 && L.in > 0, "GLVQ layout: shape [{}, {}] must be positive", L.out, L.in);
  GLVQ_CHECK(L.dim >= 1 && L.dim <= 64, "GLVQ layout: dim {} must be in 1..64", L.dim);
  GLVQ_CHECK(L.group_size > 0 && L.group_size % L.dim == 0,
             "GLVQ layout: group_size {} must be a positive multiple of dim {}", L.group_size, L.dim);
  GLVQ_CHECK(L.code == GlvqCode::box || (L.code == GlvqCode::shaped && L.dim % kShapedBlock == 0),
             "GLVQ layout: code {} with dim {} (the shaped code needs a multiple of {})", static_cast<int>(L.code),
             L.dim, kShapedBlock);
}

/// Sub-code k of a shaped vector: b little-endian bytes at byte b*k.
uint64_t shaped_subcode(const uint8_t* vec, int bits, int k) {
  uint64_t c = 0;
  for (int i = 0; i < bits; ++i) c |= uint64_t(vec[bits * k + i]) << (8 * i);
  return c;
}
void put_shaped_subcode(uint8_t* vec, int bits, int k, uint64_t c) {
  for (int i = 0; i < bits; ++i) vec[bits * k + i] = uint8_t(c >> (8 * i));
}

void check_bits(int b, int64_t g) {
  GLVQ_CHECK(b >= 1 && b <= 8, "GLVQ: group {} has bit width {}, expected 1..8", g, b);
}

}  // namespace

std::vector<int64_t> glvq_group_offsets(const GlvqLayout& L, const uint8_t* bits) {
  check_layout(L);
  const int64_t G = L.groups();
  std::vector<int64_t> off(G + 1, 0);
  for (int64_t g = 0; g < G; ++g) {
    check_bits(bits[g], g);
    off[g + 1] = off[g] + L.out * L.group_vecs(g) * glvq_vec_bytes(L.dim, bits[g]);
  }
  return off;
}

float glvq_compand(float w, float s, float mu) { return fp::compand(w, s, mu, fp::compand_log(mu)); }

float glvq_expand(float u, float s, float mu) { return fp::expand(u, s, mu, fp::compand_log(mu)); }

void glvq_pack_vec(const int32_t* uz, int dim, int bits, uint8_t* out) {
  const int64_t nb = glvq_vec_bytes(dim, bits);
  for (int64_t i = 0; i < nb; ++i) out[i] = 0;
  int pos = 0;
  for (int j = 0; j < dim; ++j) {
    const uint32_t v = uint32_t(uz[j]) & ((1u << bits) - 1u);
    for (int k = 0; k < bits; ++k, ++pos) {
      if ((v >> k) & 1u) out[pos >> 3] |= uint8_t(1u << (pos & 7));
    }
  }
}

void glvq_unpack_vec(const uint8_t* in, int dim, int bits, int32_t* uz) {
  int pos = 0;
  for (int j = 0; j < dim; ++j) {
    int32_t v = 0;
    for (int k = 0; k < bits; ++k, ++pos) v |= int32_t((in[pos >> 3] >> (pos & 7)) & 1) << k;
    uz[j] = v;
  }
}

void glvq_encode_ref(const GlvqLayout& L, const GlvqGroupParams& p, const float* W, uint8_t* codes) {
  const std::vector<int64_t> off = glvq_group_offsets(L, p.bits);
  const int d = L.dim;
  std::vector<float> u(d), y(d);
  std::vector<int32_t> uz(d);
  for (int64_t g = 0; g < L.groups(); ++g) {
    const int64_t V = L.group_vecs(g), cols = L.group_cols(g);
    const int b = p.bits[g];
    const float s = p.scale[g], mu = p.mu[g], Lc = fp::compand_log(mu);
    GLVQ_CHECK(s > 0.0f && mu >= 0.0f, "GLVQ encode: group {} has scale {} and mu {}", g, s, mu);
    GLVQ_CHECK(L.code == GlvqCode::box || mu == 0.0f, "GLVQ encode: group {} has mu {}; the shaped code has no companding", g, mu);
    const float* Gi = p.Ginv + g * d * d;
    const int64_t vb = glvq_vec_bytes(d, b);
    for (int64_t r = 0; r < L.out; ++r) {
      for (int64_t v = 0; v < V; ++v) {
        const float* w = W + r * L.in + g * L.group_size + v * d;
        const int64_t n = std::min<int64_t>(d, cols - v * d);  // < d: the padded last vector
        for (int j = 0; j < d; ++j) u[j] = j < n ? fp::compand(w[j], s, mu, Lc) : 0.0f;
        uint8_t* vec = codes + off[g] + (r * V + v) * vb;
        if (L.code == GlvqCode::shaped) {
          for (int i = 0; i < d; ++i) {
            float acc = 0.0f;
            for (int j = 0; j < d; ++j) acc = fp::fma(Gi[i * d + j], u[j], acc);
            y[i] = acc;
          }
          for (int k = 0; k < d / kShapedBlock; ++k)
            put_shaped_subcode(vec, b, k, glvq_shaped_encode(b, y.data() + k * kShapedBlock));
          continue;
        }
        for (int i = 0; i < d; ++i) {
          float acc = 0.0f;
          for (int j = 0; j < d; ++j) acc = fp::fma(Gi[i * d + j], u[j], acc);
          uz[i] = fp::round_code(acc, b);
        }
        glvq_pack_vec(uz.data(), d, b, vec);
      }
    }
  }
}

namespace {

/// The d code coordinates t of one stored vector.
inline void vec_coords(GlvqCode code, const uint8_t* in, int d, int b, int32_t* uz, float* t) {
  if (code == GlvqCode::shaped) {
    for (int k = 0; k < d / kShapedBlock; ++k) glvq_shaped_decode(b, shaped_subcode(in, b, k), t + k * kShapedBlock);
  } else {
    glvq_unpack_vec(in, d, b, uz);
    for (int j = 0; j < d; ++j) t[j] = fp::code_value(uz[j], b);
  }
}

/// Decodes the d weights of one vector into w (the format's decode, shared by decode and gemv).
inline void decode_vec(GlvqCode code, const uint8_t* in, int d, int b, const float* G, float s, float mu, float Lc,
                       int32_t* uz, float* t, float* w) {
  vec_coords(code, in, d, b, uz, t);
  for (int i = 0; i < d; ++i) {
    float u = 0.0f;
    for (int j = 0; j < d; ++j) u = fp::fma(G[i * d + j], t[j], u);
    w[i] = fp::expand(u, s, mu, Lc);
  }
}

}  // namespace

void glvq_decode_ref(const GlvqLayout& L, const GlvqGroupParams& p, const uint8_t* codes, float* W_hat) {
  const std::vector<int64_t> off = glvq_group_offsets(L, p.bits);
  const int d = L.dim;
  std::vector<int32_t> uz(d);
  std::vector<float> t(d), w(d);
  for (int64_t g = 0; g < L.groups(); ++g) {
    const int64_t V = L.group_vecs(g), cols = L.group_cols(g);
    const int b = p.bits[g];
    const float s = p.scale[g], mu = p.mu[g], Lc = fp::compand_log(mu);
    const int64_t vb = glvq_vec_bytes(d, b);
    for (int64_t r = 0; r < L.out; ++r) {
      for (int64_t v = 0; v < V; ++v) {
        float* dst = W_hat + r * L.in + g * L.group_size + v * d;
        const int64_t n = std::min<int64_t>(d, cols - v * d);
        decode_vec(L.code, codes + off[g] + (r * V + v) * vb, d, b, p.G + g * d * d, s, mu, Lc, uz.data(),
                   t.data(), n == d ? dst : w.data());
        if (n < d) std::copy_n(w.data(), n, dst);  // the padded coordinates are not weights
      }
    }
  }
}

void glvq_code_coords_ref(const GlvqLayout& L, const uint8_t* bits, const uint8_t* codes, float* t) {
  const std::vector<int64_t> off = glvq_group_offsets(L, bits);
  const int d = L.dim;
  std::vector<int32_t> uz(d);
  for (int64_t g = 0; g < L.groups(); ++g) {
    const int64_t n = L.out * L.group_vecs(g), vb = glvq_vec_bytes(d, bits[g]);
    for (int64_t k = 0; k < n; ++k, t += d) vec_coords(L.code, codes + off[g] + k * vb, d, bits[g], uz.data(), t);
  }
}

void glvq_gemv_ref(const GlvqLayout& L, const GlvqGroupParams& p, const uint8_t* codes, const float* x,
                   float* y) {
  const std::vector<int64_t> off = glvq_group_offsets(L, p.bits);
  const int d = L.dim;
  std::vector<int32_t> uz(d);
  std::vector<float> t(d), w(d);
  for (int64_t r = 0; r < L.out; ++r) y[r] = 0.0f;
  for (int64_t g = 0; g < L.groups(); ++g) {
    const int64_t V = L.group_vecs(g), cols = L.group_cols(g);
    const int b = p.bits[g];
    const float s = p.scale[g], mu = p.mu[g], Lc = fp::compand_log(mu);
    const int64_t vb = glvq_vec_bytes(d, b);
    for (int64_t r = 0; r < L.out; ++r) {
      float acc = y[r];
      for (int64_t v = 0; v < V; ++v) {
        decode_vec(L.code, codes + off[g] + (r * V + v) * vb, d, b, p.G + g * d * d, s, mu, Lc, uz.data(),
                   t.data(), w.data());
        const float* xv = x + g * L.group_size + v * d;
        const int64_t n = std::min<int64_t>(d, cols - v * d);
        for (int64_t i = 0; i < n; ++i) acc = fp::fma(w[i], xv[i], acc);
      }
      y[r] = acc;
    }
  }
}

}  // namespace glvq
