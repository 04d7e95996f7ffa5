// The GLVQ code format's CPU reference (src/quant/glvq_codec.h) against hand
// formulas, brute force and itself (pack/unpack, encode/decode, gemv).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernels/glvq_math.h"
#include "quant/glvq_codec.h"

namespace glvq {
namespace {

constexpr uint32_t kSeed = 20251027;

/// Per-group parameters that own their storage.
struct Params {
  std::vector<uint8_t> bits;
  std::vector<float> scale, mu, G, Ginv;
  GlvqGroupParams view() const { return {bits.data(), scale.data(), mu.data(), G.data(), Ginv.data()}; }
};

/// Inverse of a d x d matrix in double (Gauss-Jordan with partial pivoting), stored as float.
std::vector<float> invert(const std::vector<float>& A, int d) {
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

/// A random well-conditioned generation matrix: identity plus small noise, times `step`.
std::vector<float> random_G(std::mt19937& rng, int d, float step) {
  std::normal_distribution<float> n(0.0f, 0.15f);
  std::vector<float> G(size_t(d) * d);
  for (int i = 0; i < d; ++i)
    for (int j = 0; j < d; ++j) G[i * d + j] = step * ((i == j ? 1.0f : 0.0f) + n(rng));
  return G;
}

/// A random rotation (Gram-Schmidt on a Gaussian matrix, in double).
std::vector<float> random_rotation(std::mt19937& rng, int d) {
  std::normal_distribution<double> n(0.0, 1.0);
  std::vector<double> Q(size_t(d) * d);
  for (auto& q : Q) q = n(rng);
  for (int i = 0; i < d; ++i) {  // rows orthonormal
    for (int k = 0; k < i; ++k) {
      double dot = 0;
      for (int j = 0; j < d; ++j) dot += Q[i * d + j] * Q[k * d + j];
      for (int j = 0; j < d; ++j) Q[i * d + j] -= dot * Q[k * d + j];
    }
    double nn = 0;
    for (int j = 0; j < d; ++j) nn += Q[i * d + j] * Q[i * d + j];
    for (int j = 0; j < d; ++j) Q[i * d + j] /= std::sqrt(nn);
  }
  return std::vector<float>(Q.begin(), Q.end());
}

Params make_params(std::mt19937& rng, const GlvqLayout& L, const std::vector<uint8_t>& bits,
                   const std::vector<float>& mus) {
  Params p;
  const int d = L.dim;
  p.bits = bits;
  p.mu = mus;
  std::uniform_real_distribution<float> sd(0.02f, 0.2f);
  for (int64_t g = 0; g < L.groups(); ++g) {
    p.scale.push_back(sd(rng));
    // one lattice step of the companded value ~ the range of b bits over [-1, 1]
    const float step = 2.0f / float(1 << bits[g]);
    std::vector<float> G = random_G(rng, d, step);
    std::vector<float> Gi = invert(G, d);
    p.G.insert(p.G.end(), G.begin(), G.end());
    p.Ginv.insert(p.Ginv.end(), Gi.begin(), Gi.end());
  }
  return p;
}

std::vector<float> random_weights(std::mt19937& rng, int64_t n, float sigma) {
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> w(n);
  for (auto& v : w) v = nd(rng);
  return w;
}

TEST(GlvqCodec, PackUnpackRoundTrip) {
  std::mt19937 rng(kSeed);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  for (int d : {2, 3, 5, 8, 32}) {
    for (int b = 1; b <= 8; ++b) {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<int32_t> uz(d), back(d, -1);
        std::uniform_int_distribution<int32_t> u(0, (1 << b) - 1);
        for (auto& v : uz) v = u(rng);
        std::vector<uint8_t> buf(glvq_vec_bytes(d, b) + 1, 0xAB);
        glvq_pack_vec(uz.data(), d, b, buf.data());
        EXPECT_EQ(buf.back(), 0xAB) << "pack wrote past vec_bytes, d=" << d << " b=" << b;
        const int used = d * b;
        if (used % 8) {
          EXPECT_EQ(buf[used / 8] >> (used % 8), 0) << "padding bits must be zero";
        }
        glvq_unpack_vec(buf.data(), d, b, back.data());
        EXPECT_EQ(uz, back) << "d=" << d << " b=" << b;
      }
    }
  }
}

TEST(GlvqCodec, PackBitOrderIsLsbFirst) {
  const int32_t uz[3] = {1, 2, 7};  // 001, 010, 111 -> 0b111'010'001 = 0x1D1
  uint8_t out[2] = {0, 0};
  glvq_pack_vec(uz, 3, 3, out);
  EXPECT_EQ(out[0], 0xD1);
  EXPECT_EQ(out[1], 0x01);
  EXPECT_EQ(glvq_vec_bytes(8, 3), 3);
  EXPECT_EQ(glvq_vec_bytes(5, 3), 2);
  EXPECT_EQ(glvq_vec_bytes(32, 1), 4);
}

TEST(GlvqCodec, GroupOffsets) {
  GlvqLayout L{3, 48, 8, 16};
  const uint8_t bits[3] = {1, 3, 5};
  const auto off = glvq_group_offsets(L, bits);
  ASSERT_EQ(off.size(), 4u);
  EXPECT_EQ(off[0], 0);
  EXPECT_EQ(off[1], 3 * 2 * 1);
  EXPECT_EQ(off[2], 6 + 3 * 2 * 3);
  EXPECT_EQ(off[3], 24 + 3 * 2 * 5);
}

TEST(GlvqCodec, IdentityLatticeIsScalarUniformQuantization) {
  std::mt19937 rng(kSeed + 1);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 1);
  const int d = 4;
  GlvqLayout L{5, 32, d, 16};
  for (int b = 1; b <= 8; ++b) {
    // powers of two: every step of the hand formula is exact, so equality is exact
    const float s = 0.5f, step = 0.25f;
    Params p;
    p.bits.assign(L.groups(), uint8_t(b));
    p.scale.assign(L.groups(), s);
    p.mu.assign(L.groups(), 0.0f);
    for (int64_t g = 0; g < L.groups(); ++g) {
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j) {
          p.G.push_back(i == j ? step : 0.0f);
          p.Ginv.push_back(i == j ? 1.0f / step : 0.0f);
        }
    }
    std::vector<float> W = random_weights(rng, L.out * L.in, 0.1f * float(1 << b));
    W[0] = 0.0f;
    W[1] = 0.125f;    // exactly on a lattice boundary: floor keeps it (z = 1)
    W[2] = -0.125f;   // z = -1
    W[3] = 1000.0f;   // clamped high
    W[4] = -1000.0f;  // clamped low
    const auto off = glvq_group_offsets(L, p.bits.data());
    std::vector<uint8_t> codes(off.back());
    std::vector<float> Wh(W.size());
    glvq_encode_ref(L, p.view(), W.data(), codes.data());
    glvq_decode_ref(L, p.view(), codes.data(), Wh.data());
    const double lo = -double(1 << (b - 1)), hi = double((1 << (b - 1)) - 1);
    for (size_t i = 0; i < W.size(); ++i) {
      const double z = std::min(std::max(std::floor(double(W[i]) / (s * step)), lo), hi);
      const double expect = s * step * (z + 0.5);
      ASSERT_EQ(double(Wh[i]), expect) << "b=" << b << " i=" << i << " w=" << W[i];
    }
  }
}

TEST(GlvqCodec, IdentityLatticeGeneralStep) {
  // A step that is no power of two: compare away from the rounding boundaries.
  std::mt19937 rng(kSeed + 2);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 2);
  const int d = 8;
  GlvqLayout L{4, 64, d, 32};
  const int b = 3;
  const float s = 0.07f, step = 0.3f;
  Params p;
  p.bits.assign(L.groups(), uint8_t(b));
  p.scale.assign(L.groups(), s);
  p.mu.assign(L.groups(), 0.0f);
  for (int64_t g = 0; g < L.groups(); ++g)
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) {
        p.G.push_back(i == j ? step : 0.0f);
        p.Ginv.push_back(i == j ? 1.0f / step : 0.0f);
      }
  std::vector<float> W = random_weights(rng, L.out * L.in, 0.1f);
  const auto off = glvq_group_offsets(L, p.bits.data());
  std::vector<uint8_t> codes(off.back());
  std::vector<float> Wh(W.size());
  glvq_encode_ref(L, p.view(), W.data(), codes.data());
  glvq_decode_ref(L, p.view(), codes.data(), Wh.data());
  int checked = 0;
  for (size_t i = 0; i < W.size(); ++i) {
    const double y = double(W[i]) / s / step;
    if (std::fabs(y - std::round(y)) < 1e-4) continue;
    const double z = std::min(std::max(std::floor(y), -4.0), 3.0);
    EXPECT_NEAR(Wh[i], s * step * (z + 0.5), 1e-6) << "i=" << i;
    ++checked;
  }
  EXPECT_GT(checked, int(W.size()) - 4);
}

TEST(GlvqCodec, CompandExpandRoundTrip) {
  std::mt19937 rng(kSeed + 3);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 3);
  std::uniform_real_distribution<float> ue(-12.0f, 1.0f), us(0.01f, 0.5f);
  for (float mu : {0.0f, 10.0f, 255.0f}) {
    double worst = 0;
    for (int i = 0; i < 20000; ++i) {
      const float s = us(rng);
      const float w = (i & 1 ? -1.0f : 1.0f) * std::pow(10.0f, ue(rng)) * s;
      const float u = glvq_compand(w, s, mu);
      const float back = glvq_expand(u, s, mu);
      const double rel = std::fabs(double(back) - w) / std::fabs(double(w));
      worst = std::max(worst, rel);
      // expand(compand(w)) multiplies u's rounding by up to ln(1+mu)*|u| (~8 here)
      ASSERT_LT(rel, 3e-6) << "mu=" << mu << " s=" << s << " w=" << w << " u=" << u;
      // against double precision
      if (mu > 0) {
        const double ud = std::log1p(mu * std::fabs(double(w)) / s) / std::log1p(double(mu));
        ASSERT_NEAR(std::fabs(u), ud, 4e-7 * ud + 1e-30) << "mu=" << mu << " w=" << w;
      }
    }
    EXPECT_EQ(glvq_compand(0.0f, 0.1f, mu), 0.0f);
    EXPECT_EQ(glvq_expand(0.0f, 0.1f, mu), 0.0f);
    EXPECT_LT(worst, mu == 0.0f ? 1.2e-7 : 3e-6);
  }
  // c(s) = 1 for every mu: the scale maps to the edge of the companded range
  EXPECT_NEAR(glvq_compand(0.3f, 0.3f, 255.0f), 1.0f, 2e-7);
  EXPECT_NEAR(glvq_expand(1.0f, 0.3f, 255.0f), 0.3f, 1e-7);
}

TEST(GlvqCodec, ScalarMathAgainstDouble) {
  // log and exp of kernels/glvq_math.h are under 2 ulp from the true value
  std::mt19937 rng(kSeed + 4);
  std::uniform_real_distribution<float> ul(-30.0f, 30.0f), ux(-80.0f, 80.0f);
  for (int i = 0; i < 100000; ++i) {
    const float x = std::exp2(ul(rng));
    const double lt = std::log(double(x));
    ASSERT_NEAR(fp::log(x), lt, 2.0 * std::ldexp(1.0, std::ilogb(float(lt)) - 23) + 1e-45) << x;
    const float e = ux(rng);
    const double et = std::exp(double(e));
    ASSERT_NEAR(fp::exp(e) / et, 1.0, 2.5e-7) << e;
    const float sm = std::exp2(ul(rng) * 0.5f - 20.0f);
    ASSERT_NEAR(fp::log1p(sm) / std::log1p(double(sm)), 1.0, 3e-7) << sm;
    ASSERT_NEAR(fp::expm1(sm) / std::expm1(double(sm)), 1.0, 3e-7) << sm;
  }
  EXPECT_EQ(fp::log(1.0f), 0.0f);
  EXPECT_EQ(fp::exp(0.0f), 1.0f);
}

TEST(GlvqCodec, CodesAlwaysInRange) {
  std::mt19937 rng(kSeed + 5);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 5);
  GlvqLayout L{7, 64, 8, 32};
  for (int b = 1; b <= 8; ++b) {
    Params p = make_params(rng, L, std::vector<uint8_t>(L.groups(), uint8_t(b)), {255.0f, 0.0f});
    std::vector<float> W = random_weights(rng, L.out * L.in, 0.5f);  // often outside [-s, s]
    W[3] = std::numeric_limits<float>::infinity();
    W[9] = -std::numeric_limits<float>::infinity();
    W[17] = std::nanf("");
    const auto off = glvq_group_offsets(L, p.bits.data());
    std::vector<uint8_t> codes(off.back());
    glvq_encode_ref(L, p.view(), W.data(), codes.data());
    int32_t lo = 1 << 30, hi = -1;
    for (int64_t g = 0; g < L.groups(); ++g)
      for (int64_t v = 0; v < L.out * L.vecs_per_row(); ++v) {
        int32_t uz[8];
        glvq_unpack_vec(codes.data() + off[g] + v * glvq_vec_bytes(8, b), 8, b, uz);
        for (int32_t c : uz) {
          lo = std::min(lo, c);
          hi = std::max(hi, c);
        }
      }
    EXPECT_GE(lo, 0);
    EXPECT_LT(hi, 1 << b);
    std::vector<float> Wh(W.size());
    glvq_decode_ref(L, p.view(), codes.data(), Wh.data());
    for (float w : Wh) EXPECT_TRUE(std::isfinite(w));
  }
}

TEST(GlvqCodec, BabaiIsNearestPointForOrthogonalG) {
  std::mt19937 rng(kSeed + 6);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 6);
  for (int d = 2; d <= 4; ++d) {
    GlvqLayout L{50, 4 * d, d, 4 * d};
    const int b = 8;  // codes reach +-128 lattice steps: no clamping for |w| <= ~40 steps
    Params p;
    p.bits = {uint8_t(b)};
    p.scale = {1.0f};
    p.mu = {0.0f};
    const float step = 0.37f;
    std::vector<float> Q = random_rotation(rng, d);
    for (auto q : Q) p.G.push_back(step * q);
    p.Ginv = invert(p.G, d);
    std::vector<float> W = random_weights(rng, L.out * L.in, 3.0f);
    const auto off = glvq_group_offsets(L, p.bits.data());
    std::vector<uint8_t> codes(off.back());
    std::vector<float> Wh(W.size());
    glvq_encode_ref(L, p.view(), W.data(), codes.data());
    glvq_decode_ref(L, p.view(), codes.data(), Wh.data());
    for (int64_t v = 0; v < L.out * L.in / d; ++v) {
      const float* u = W.data() + v * d;
      // brute force over a box around the continuous solution
      std::vector<double> yc(d);
      for (int i = 0; i < d; ++i) {
        double acc = 0;
        for (int j = 0; j < d; ++j) acc += double(p.Ginv[i * d + j]) * u[j];
        yc[i] = std::floor(acc);
      }
      double best = 1e300;
      int n = 1;
      for (int i = 0; i < d; ++i) n *= 5;
      for (int c = 0; c < n; ++c) {
        int cc = c;
        double dist = 0;
        std::vector<double> t(d);
        for (int i = 0; i < d; ++i, cc /= 5) t[i] = yc[i] + (cc % 5 - 2) + 0.5;
        for (int i = 0; i < d; ++i) {
          double pt = 0;
          for (int j = 0; j < d; ++j) pt += double(p.G[i * d + j]) * t[j];
          dist += (pt - u[i]) * (pt - u[i]);
        }
        best = std::min(best, dist);
      }
      double got = 0;
      for (int i = 0; i < d; ++i) got += (double(Wh[v * d + i]) - u[i]) * (double(Wh[v * d + i]) - u[i]);
      ASSERT_LE(got, best + 1e-5) << "d=" << d << " vector " << v;
    }
  }
}

TEST(GlvqCodec, GemvMatchesDecodeThenMatvec) {
  std::mt19937 rng(kSeed + 7);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 7);
  struct Case {
    GlvqLayout L;
    std::vector<uint8_t> bits;
    std::vector<float> mu;
  };
  std::vector<Case> cases = {
      {{3, 48, 8, 16}, {1, 3, 5}, {0.0f, 10.0f, 255.0f}},  // odd shape, mixed bits
      {{17, 64, 32, 32}, {2, 4}, {255.0f, 0.0f}},
      {{9, 48, 4, 16}, {2, 2, 3}, {30.0f, 30.0f, 0.0f}},
      {{5, 40, 5, 20}, {7, 8}, {0.0f, 100.0f}},
  };
  for (const Case& c : cases) {
    const GlvqLayout& L = c.L;
    Params p = make_params(rng, L, c.bits, c.mu);
    std::vector<float> W = random_weights(rng, L.out * L.in, 0.1f);
    std::vector<float> x = random_weights(rng, L.in, 1.0f);
    const auto off = glvq_group_offsets(L, p.bits.data());
    std::vector<uint8_t> codes(off.back());
    glvq_encode_ref(L, p.view(), W.data(), codes.data());
    std::vector<float> Wh(W.size()), y(L.out);
    glvq_decode_ref(L, p.view(), codes.data(), Wh.data());
    glvq_gemv_ref(L, p.view(), codes.data(), x.data(), y.data());
    for (int64_t r = 0; r < L.out; ++r) {
      double acc = 0, mag = 0;
      for (int64_t k = 0; k < L.in; ++k) {
        acc += double(Wh[r * L.in + k]) * x[k];
        mag += std::fabs(double(Wh[r * L.in + k]) * x[k]);
      }
      EXPECT_NEAR(y[r], acc, 1e-6 * mag + 1e-12) << "out=" << L.out << " dim=" << L.dim << " row " << r;
    }
  }
}

TEST(GlvqCodec, DecodeMatchesHandFormulaOnOddShape) {
  // out=3, in=48, dim=8, group_size 16, bits {1,3,5}: every weight from the
  // spec's formula, independently of decode_ref's loops.
  std::mt19937 rng(kSeed + 8);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 8);
  GlvqLayout L{3, 48, 8, 16};
  Params p = make_params(rng, L, {1, 3, 5}, {0.0f, 10.0f, 255.0f});
  std::vector<float> W = random_weights(rng, L.out * L.in, 0.1f);
  const auto off = glvq_group_offsets(L, p.bits.data());
  std::vector<uint8_t> codes(off.back());
  std::vector<float> Wh(W.size());
  glvq_encode_ref(L, p.view(), W.data(), codes.data());
  glvq_decode_ref(L, p.view(), codes.data(), Wh.data());
  double err_hat = 0, err_zero = 0;
  for (int64_t r = 0; r < L.out; ++r)
    for (int64_t k = 0; k < L.in; ++k) {
      const int64_t g = k / 16, v = (k % 16) / 8, i = k % 8;
      const int b = p.bits[g];
      int32_t uz[8];
      glvq_unpack_vec(codes.data() + off[g] + (r * 2 + v) * glvq_vec_bytes(8, b), 8, b, uz);
      double u = 0;
      for (int j = 0; j < 8; ++j) u += double(p.G[g * 64 + i * 8 + j]) * (uz[j] - (1 << (b - 1)) + 0.5);
      const double s = p.scale[g], mu = p.mu[g];
      const double w = mu == 0 ? s * u : (u < 0 ? -1 : 1) * s * std::expm1(std::fabs(u) * std::log1p(mu)) / mu;
      EXPECT_NEAR(Wh[r * L.in + k], w, 1e-5 * std::fabs(w) + 1e-9) << "r=" << r << " k=" << k;
      err_hat += (Wh[r * L.in + k] - W[r * L.in + k]) * (Wh[r * L.in + k] - W[r * L.in + k]);
      err_zero += W[r * L.in + k] * W[r * L.in + k];
    }
  EXPECT_LT(err_hat, err_zero) << "quantization should beat the all-zero weight";
}

// ---------------------------------------------------------------- narrower last group

/// Random widths per group of L (1..8) and mu (0 or > 0, mixed).
Params narrow_params(std::mt19937& rng, const GlvqLayout& L) {
  std::uniform_int_distribution<int> bd(1, 8), md(0, 2);
  std::vector<uint8_t> bits;
  std::vector<float> mus;
  for (int64_t g = 0; g < L.groups(); ++g) {
    bits.push_back(uint8_t(bd(rng)));
    const int m = md(rng);  // the shaped code has no companding
    mus.push_back(m == 0 || L.code == GlvqCode::shaped ? 0.0f : 40.0f);
  }
  return make_params(rng, L, bits, mus);
}

TEST(GlvqCodec, NarrowLastGroupLayout) {
  // in = 100, gs = 32, d = 8: groups of 32, 32, 32 and 4 columns; the last has one
  // vector per row holding 4 weights and 4 padded coordinates.
  GlvqLayout L{3, 100, 8, 32};
  EXPECT_EQ(L.groups(), 4);
  EXPECT_FALSE(L.full_groups());
  EXPECT_EQ(L.group_cols(2), 32);
  EXPECT_EQ(L.group_cols(3), 4);
  EXPECT_EQ(L.group_vecs(0), 4);
  EXPECT_EQ(L.group_vecs(3), 1);
  const uint8_t bits[4] = {2, 3, 1, 5};
  const auto off = glvq_group_offsets(L, bits);
  ASSERT_EQ(off.size(), 5u);
  EXPECT_EQ(off[1], 3 * 4 * 2);
  EXPECT_EQ(off[2], off[1] + 3 * 4 * 3);
  EXPECT_EQ(off[3], off[2] + 3 * 4 * 1);
  EXPECT_EQ(off[4], off[3] + 3 * 1 * 5);
  // 688 = 5 * 128 + 48 at d = 32: the last group has a full vector and one of 16 weights.
  GlvqLayout M{2, 688, 32, 128};
  EXPECT_EQ(M.groups(), 6);
  EXPECT_EQ(M.group_cols(5), 48);
  EXPECT_EQ(M.group_vecs(5), 2);
  EXPECT_TRUE((GlvqLayout{2, 640, 32, 128}.full_groups()));
}

TEST(GlvqCodec, NarrowLastGroupEqualsZeroPaddedLayer) {
  // The spec of the padded last vector: its missing weights are coordinates with
  // u = 0. So a layer of width in must give the same bytes as the layer of width
  // ceil(in/d)*d whose extra columns hold zeros, and decode to its first in columns.
  std::mt19937 rng(kSeed + 20);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 20);
  struct Case {
    int64_t out, in;
    int d, gs;
  };
  for (const Case& c : std::vector<Case>{{3, 688, 8, 128},
                                         {3, 688, 32, 128},
                                         {2, 960, 8, 128},
                                         {2, 960, 32, 128},
                                         {1, 8640, 8, 128},
                                         {1, 8640, 32, 128},
                                         {4, 100, 8, 32},
                                         {4, 100, 32, 128},
                                         {5, 5, 8, 128},
                                         {5, 5, 32, 32}})
  for (GlvqCode code : {GlvqCode::box, GlvqCode::shaped}) {
    SCOPED_TRACE(testing::Message() << "code " << static_cast<int>(code) << " out " << c.out << " in " << c.in
                                    << " d " << c.d << " gs " << c.gs);
    const GlvqLayout L{c.out, c.in, c.d, c.gs, code};
    const int64_t in_p = (c.in + c.d - 1) / c.d * c.d;
    const GlvqLayout P{c.out, in_p, c.d, c.gs, code};
    ASSERT_EQ(P.groups(), L.groups());
    Params p = narrow_params(rng, L);
    std::vector<float> W = random_weights(rng, c.out * c.in, 0.1f), Wp(size_t(c.out * in_p), 0.0f);
    for (int64_t r = 0; r < c.out; ++r) std::copy_n(W.data() + r * c.in, c.in, Wp.data() + r * in_p);
    const auto off = glvq_group_offsets(L, p.bits.data());
    ASSERT_EQ(off, glvq_group_offsets(P, p.bits.data()));
    std::vector<uint8_t> codes(off.back()), codes_p(off.back());
    glvq_encode_ref(L, p.view(), W.data(), codes.data());
    glvq_encode_ref(P, p.view(), Wp.data(), codes_p.data());
    EXPECT_EQ(codes, codes_p);
    std::vector<float> Wh(W.size(), NAN), Wh_p(Wp.size(), NAN);
    glvq_decode_ref(L, p.view(), codes.data(), Wh.data());
    glvq_decode_ref(P, p.view(), codes.data(), Wh_p.data());
    bool same = true;
    for (int64_t r = 0; r < c.out; ++r)
      for (int64_t k = 0; k < c.in; ++k) same = same && Wh[r * c.in + k] == Wh_p[r * in_p + k];
    EXPECT_TRUE(same);
    // gemv over the true columns only: x's padding part never enters.
    std::vector<float> x = random_weights(rng, c.in, 1.0f), xp(size_t(in_p), 1e30f), y(c.out), y_p(c.out);
    std::copy(x.begin(), x.end(), xp.begin());
    for (int64_t k = c.in; k < in_p; ++k) xp[k] = 0.0f;
    glvq_gemv_ref(L, p.view(), codes.data(), x.data(), y.data());
    glvq_gemv_ref(P, p.view(), codes.data(), xp.data(), y_p.data());
    for (int64_t r = 0; r < c.out; ++r) EXPECT_EQ(y[r], y_p[r]) << "row " << r;
  }
}

TEST(GlvqCodec, NarrowLastGroupDecodeMatchesHandFormula) {
  // Every weight of a layer with a narrower last group (and a padded last vector)
  // from the spec's formula, with the byte offsets computed here.
  std::mt19937 rng(kSeed + 21);
  SCOPED_TRACE(testing::Message() << "seed " << kSeed + 21);
  for (int d : {8, 32}) {
    SCOPED_TRACE(testing::Message() << "d " << d);
    const int gs = 64;
    GlvqLayout L{3, 2 * gs + d + 5, d, gs};  // groups of 64, 64 and d + 5 columns
    Params p = narrow_params(rng, L);
    std::vector<float> W = random_weights(rng, L.out * L.in, 0.1f);
    std::vector<uint8_t> codes(glvq_group_offsets(L, p.bits.data()).back());
    std::vector<float> Wh(W.size());
    glvq_encode_ref(L, p.view(), W.data(), codes.data());
    glvq_decode_ref(L, p.view(), codes.data(), Wh.data());
    int64_t base = 0;
    for (int64_t g = 0; g < 3; ++g) {
      const int64_t cols = g < 2 ? gs : d + 5, V = (cols + d - 1) / d;
      const int b = p.bits[g];
      for (int64_t r = 0; r < L.out; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t v = c / d, i = c % d;
          std::vector<int32_t> uz(d);
          glvq_unpack_vec(codes.data() + base + (r * V + v) * glvq_vec_bytes(d, b), d, b, uz.data());
          double u = 0;
          for (int j = 0; j < d; ++j) u += double(p.G[g * d * d + i * d + j]) * (uz[j] - (1 << (b - 1)) + 0.5);
          const double s = p.scale[g], mu = p.mu[g];
          const double w = mu == 0 ? s * u : (u < 0 ? -1 : 1) * s * std::expm1(std::fabs(u) * std::log1p(mu)) / mu;
          const float got = Wh[r * L.in + g * gs + c];
          EXPECT_NEAR(got, w, 1e-5 * std::fabs(w) + 1e-9) << "g=" << g << " r=" << r << " c=" << c;
        }
      base += L.out * V * glvq_vec_bytes(d, b);
    }
    EXPECT_EQ(base, int64_t(codes.size()));
  }
}

}  // namespace
}  // namespace glvq
