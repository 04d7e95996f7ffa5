// GLVQ end to end on one synthetic layer: learning beats its Cholesky init,
// the reported loss is that of the stored arrays decoded by the test, the
// hand-written gradients match finite differences, the storage is what the
// arrays say, and a fixed seed gives the same bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/error.h"
#include "quant/glvq.h"
#include "quant/glvq_codec.h"
#include "quant/glvq_learn.h"

#include "glvq_ref64.h"

namespace glvq {
namespace {

constexpr uint64_t kSeed = 20251020;

/// W [out, in] with a per-row and per-column scale spread and a few heavy-tailed
/// entries; H = X^T X / n with X low-rank-correlated plus noise and a few loud channels.
void synthetic_layer(int64_t out, int64_t in, uint64_t seed, at::Tensor& W, at::Tensor& H) {
  std::printf("synthetic layer [%ld, %ld], seed %lu\n", static_cast<long>(out), static_cast<long>(in),
              static_cast<unsigned long>(seed));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f = at::TensorOptions().dtype(at::kFloat);
  W = at::randn({out, in}, gen, f) * at::exp(at::randn({out, 1}, gen, f) * 0.5) *
      at::exp(at::randn({1, in}, gen, f) * 0.3) * 0.02;
  W = W + (at::rand({out, in}, gen, f) < 0.002).to(at::kFloat) * at::randn({out, in}, gen, f) * 0.2;
  const int64_t n = 4 * in, r = in / 8;
  const at::Tensor sv = at::exp(-at::arange(r, f) / (r / 4.0)).unsqueeze(0);
  at::Tensor X = at::mm(at::randn({n, r}, gen, f) * sv, at::randn({r, in}, gen, f)) + 0.3 * at::randn({n, in}, gen, f);
  X = X * at::exp(at::randn({1, in}, gen, f) * 0.5) * (1 + 9 * (at::rand({1, in}, gen, f) < 0.01).to(at::kFloat));
  H = at::mm(X.t(), X) / static_cast<double>(n);
}

GlvqOptions small_options() {
  GlvqOptions o;
  o.cfg.code = "box";  // these tests are about the box code's Adam learning (test_glvq_shaped.cpp: the shaped code)
  o.bits = 2;
  o.seed = kSeed;
  o.cfg.dim = 8;
  o.cfg.group_size = 64;
  o.cfg.iters = 60;
  o.cfg.lr = 0.03;
  // Every option spelled out: the tests must not follow config.h's defaults.
  o.cfg.lambda = 1e-4;
  o.cfg.eps = 1e-5;
  o.cfg.rounding = "babai";
  o.cfg.bit_alloc = false;
  o.cfg.companding = true;
  o.cfg.error_feedback = false;
  o.cfg.incoherence = false;
  return o;
}

TEST(GlvqLearn, LearningBeatsTheCholeskyInit) {
  at::Tensor W, H;
  synthetic_layer(256, 256, kSeed, W, H);
  const QuantizedLinear q = glvq_quantize_layer(W, H, "layer", small_options());
  const double ref = layer_loss(W, at::zeros_like(W), H);
  std::printf("loss / ||W||_H^2: init %.5f learned %.5f\n", q.loss_init / ref, q.loss / ref);
  EXPECT_GT(q.loss_init, 0);
  // Learning must buy a clear margin, not just keep the init (which it falls back to).
  EXPECT_LT(q.loss, 0.95 * q.loss_init);
}

TEST(GlvqLearn, ReportedLossIsThatOfTheStoredArrays) {
  // q.loss (what the report shows and what picks the better of init and learned)
  // against the stored arrays decoded in double by the test's own decoder
  // (tests/glvq_ref64.h: bit unpacking, G (z + 1/2), Sylvester Hadamard).
  at::Tensor W, H;
  synthetic_layer(128, 256, kSeed + 1, W, H);
  for (bool inc : {false, true}) {
    for (bool ef : {false, true}) {
      SCOPED_TRACE(std::string("incoherence ") + (inc ? "on" : "off") + ", feedback " + (ef ? "on" : "off"));
      GlvqOptions o = small_options();
      o.cfg.iters = 10;
      o.cfg.incoherence = inc;
      o.cfg.error_feedback = ef;
      const QuantizedLinear q = glvq_quantize_layer(W, H, "layer", o);
      const at::Tensor W_ref = ref64::dequantize(q);
      const at::Tensor W_hat = glvq_dequantize(q);
      ASSERT_EQ(W_hat.sizes(), W.sizes());
      EXPECT_LT((W_hat.to(at::kDouble) - W_ref).abs().max().item<double>(), 1e-6 * W_ref.abs().max().item<double>());
      const double ref = ref64::loss(W, W_ref, H);
      EXPECT_NEAR(q.loss, ref, 1e-5 * ref);
      EXPECT_LT(q.loss, q.loss_init);
    }
  }
}

/// The learner's objective for fixed codes, written out in double: per group
/// sum_vectors e A e^T / loss0 + lambda ||G - G0||^2 / ||G0||^2 with the
/// reconstruction w' = c^-1(G (z + 1/2)) of ref64::expand.
double objective(const at::Tensor& W, const at::Tensor& A, const at::Tensor& Z, const at::Tensor& G,
                 const at::Tensor& mu, const at::Tensor& s, const at::Tensor& loss0, const at::Tensor& G0,
                 double lambda, bool companding) {
  const int64_t B = W.size(0), out = W.size(1), gs = W.size(2), d = G.size(1);
  auto w = W.accessor<double, 3>(), a = A.accessor<double, 3>(), z = Z.accessor<double, 3>();
  auto g = G.accessor<double, 3>(), g0 = G0.accessor<double, 3>();
  auto mu_b = mu.accessor<double, 1>(), s_b = s.accessor<double, 1>(), l0 = loss0.accessor<double, 1>();
  double f = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> e(static_cast<size_t>(gs));
    double loss = 0;
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t v = 0; v < gs / d; ++v) {
        for (int64_t i = 0; i < d; ++i) {
          double u = 0;
          for (int64_t j = 0; j < d; ++j) u += g[b][i][j] * (z[b][r * (gs / d) + v][j] + 0.5);
          e[v * d + i] = w[b][r][v * d + i] - ref64::expand(u, s_b[b], companding ? mu_b[b] : 0.0);
        }
      }
      for (int64_t i = 0; i < gs; ++i)
        for (int64_t j = 0; j < gs; ++j) loss += e[i] * a[b][i][j] * e[j];
    }
    double pen = 0, n0 = 0;
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) {
        pen += (g[b][i][j] - g0[b][i][j]) * (g[b][i][j] - g0[b][i][j]);
        n0 += g0[b][i][j] * g0[b][i][j];
      }
    f += loss / l0[b] + lambda * pen / n0;
  }
  return f;
}

TEST(GlvqLearn, GradientsMatchFiniteDifferences) {
  // glvq_learn_gradient (hand-written d/dG, d/dmu) against central differences
  // of the objective above, in double, with and without companding.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(kSeed + 5);
  std::printf("seed %lu\n", static_cast<unsigned long>(kSeed + 5));
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 3, out = 4, gs = 16, d = 8, M = out * gs / d;
  const at::Tensor W = at::randn({B, out, gs}, gen, f64) * 0.3;
  const at::Tensor X = at::randn({B, 3 * gs, gs}, gen, f64);
  const at::Tensor A = at::bmm(X.transpose(1, 2), X) / (3.0 * gs);
  const at::Tensor Z = at::randint(-2, 2, {B, M, d}, gen, f64);  // codes of 2 bits
  const at::Tensor G0 = at::eye(d, f64).expand({B, d, d}) * 0.2 + at::randn({B, d, d}, gen, f64) * 0.03;
  const at::Tensor G = G0 + at::randn({B, d, d}, gen, f64) * 0.02;
  const at::Tensor s = at::rand({B}, gen, f64) + 0.5;
  const at::Tensor mu = at::rand({B}, gen, f64) * 100 + 20;
  const at::Tensor loss0 = at::rand({B}, gen, f64) + 0.5;
  const double lambda = 0.3;
  for (bool companding : {false, true}) {
    SCOPED_TRACE(companding ? "companding" : "no companding");
    auto f = [&](const at::Tensor& Gx, const at::Tensor& mux) {
      return objective(W, A, Z, Gx, mux, s, loss0, G0, lambda, companding);
    };
    // E A with E from the same reconstruction as the objective.
    at::Tensor E = at::empty_like(W);
    {
      const at::Tensor U = at::matmul(Z + 0.5, G.transpose(1, 2)).reshape({B, out, gs});
      auto u = U.accessor<double, 3>();
      auto e = E.accessor<double, 3>();
      auto w = W.accessor<double, 3>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t r = 0; r < out; ++r)
          for (int64_t i = 0; i < gs; ++i)
            e[b][r][i] = w[b][r][i] - ref64::expand(u[b][r][i], s[b].item<double>(),
                                                    companding ? mu[b].item<double>() : 0.0);
    }
    const GlvqLearnGrad g = glvq_learn_gradient(at::bmm(E, A), Z, G, mu, s, loss0, G0, lambda, companding);
    ASSERT_EQ(g.dG.sizes(), G.sizes());
    const double h = 1e-6;
    at::Tensor fd = at::empty_like(G);
    for (int64_t i = 0; i < G.numel(); ++i) {
      at::Tensor Gp = G.clone(), Gm = G.clone();
      Gp.view(-1)[i] += h;
      Gm.view(-1)[i] -= h;
      fd.view(-1)[i] = (f(Gp, mu) - f(Gm, mu)) / (2 * h);
    }
    const double scale_g = fd.abs().max().item<double>();
    std::printf("d/dG: max |fd| %.4g, max |analytic - fd| %.3g\n", scale_g,
                (g.dG - fd).abs().max().item<double>());
    EXPECT_GT(scale_g, 1e-2);
    EXPECT_LT((g.dG - fd).abs().max().item<double>(), 1e-6 * scale_g);
    if (!companding) {
      EXPECT_FALSE(g.dmu.defined());
      continue;
    }
    ASSERT_TRUE(g.dmu.defined());
    for (int64_t b = 0; b < B; ++b) {
      const double hm = 1e-5 * mu[b].item<double>();
      at::Tensor mp = mu.clone(), mm = mu.clone();
      mp[b] += hm;
      mm[b] -= hm;
      const double fdm = (f(G, mp) - f(G, mm)) / (2 * hm), an = g.dmu[b].item<double>();
      std::printf("d/dmu[%ld]: fd %.6g analytic %.6g\n", static_cast<long>(b), fdm, an);
      EXPECT_GT(std::abs(fdm), 1e-6);
      EXPECT_NEAR(an, fdm, 1e-6 * std::abs(fdm));
    }
  }
}

TEST(GlvqLearn, BitsAccountingMatchesTheStoredArrays) {
  at::Tensor W, H;
  synthetic_layer(96, 256, kSeed + 2, W, H);
  GlvqOptions o = small_options();
  o.cfg.iters = 5;
  o.cfg.incoherence = true;
  o.bits = 3;
  const QuantizedLinear q = glvq_quantize_layer(W, H, "layer", o);
  const BitsBreakdown b = count_bits(q);
  // By hand: 4 groups of 64 columns, d = 8, 3 bits: a vector of 8 codes is 24 bits = 3 bytes.
  const double n = 96.0 * 256.0;
  const double codes = 4 * 96 * (64 / 8) * 3 * 8 / n;  // = 3 bits exactly
  const double lattice = 4 * 8 * 8 * 16 / n, mu = 4 * 16 / n, scale = 4 * 16 / n, bits = 4 * 8 / n;
  const double signs = (32 + 12) * 8 / n;  // ceil(256/8) + ceil(96/8) bytes
  EXPECT_DOUBLE_EQ(b.codes, codes);
  EXPECT_NEAR(b.codes, 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(b.lattice, lattice);
  EXPECT_DOUBLE_EQ(b.companding, mu);
  EXPECT_DOUBLE_EQ(b.scales, scale);
  EXPECT_DOUBLE_EQ(b.bitmap, bits);
  EXPECT_DOUBLE_EQ(b.transform, signs);
  EXPECT_NEAR(b.total(), 3.0 + lattice + mu + scale + bits + signs, 1e-12);
  EXPECT_EQ(b.other, 0);
  EXPECT_EQ(q.attrs.at("dim"), 8);
  EXPECT_EQ(q.attrs.at("group_size"), 64);
  EXPECT_EQ(q.attrs.at("incoherence"), 1);
}

TEST(GlvqLearn, FixedSeedIsDeterministic) {
  at::Tensor W, H;
  synthetic_layer(64, 128, kSeed + 3, W, H);
  GlvqOptions o = small_options();
  o.cfg.iters = 15;
  o.cfg.incoherence = true;
  o.cfg.error_feedback = true;
  o.cfg.bit_alloc = true;
  const QuantizedLinear a = glvq_quantize_layer(W, H, "blk.0.q", o), b = glvq_quantize_layer(W, H, "blk.0.q", o);
  ASSERT_EQ(a.arrays.size(), b.arrays.size());
  for (const auto& [name, t] : a.arrays) EXPECT_TRUE(at::equal(t, b.arrays.at(name))) << name;
  EXPECT_EQ(a.loss, b.loss);
  // Another layer name draws other incoherence signs.
  const QuantizedLinear c = glvq_quantize_layer(W, H, "blk.0.k", o);
  EXPECT_FALSE(at::equal(a.arrays.at("signs_in"), c.arrays.at("signs_in")));
}

TEST(GlvqLearn, WholeRowGroupsAndBadShapes) {
  at::Tensor W, H;
  synthetic_layer(32, 64, kSeed + 4, W, H);
  GlvqOptions o = small_options();
  o.cfg.group_size = 0;
  o.cfg.iters = 3;
  const QuantizedLinear q = glvq_quantize_layer(W, H, "layer", o);
  EXPECT_EQ(q.attrs.at("group_size"), 64);
  EXPECT_EQ(q.arrays.at("G").size(0), 1);
  o.cfg.group_size = 48;  // does not divide 64: groups of 48 and 16 columns
  const QuantizedLinear n = glvq_quantize_layer(W, H, "layer", o);
  EXPECT_EQ(n.attrs.at("group_size"), 48);
  EXPECT_EQ(n.arrays.at("G").size(0), 2);
  EXPECT_EQ(glvq_dequantize(n).sizes(), W.sizes());
  // group_size 0 on a width that d does not divide: one group, the row rounded up to whole vectors.
  const at::Tensor W5 = W.narrow(1, 0, 5).contiguous(), H5 = H.narrow(0, 0, 5).narrow(1, 0, 5).contiguous();
  o.cfg.group_size = 0;
  const QuantizedLinear q5 = glvq_quantize_layer(W5, H5, "layer", o);
  EXPECT_EQ(q5.attrs.at("group_size"), 8);
  EXPECT_EQ(q5.arrays.at("codes").numel(), 32 * 2);  // one 8-vector of 2-bit codes per row
  o.cfg.group_size = 44;  // not a multiple of dim
  EXPECT_THROW(glvq_quantize_layer(W, H, "layer", o), Error);
}

// ---------------------------------------------------------------- any width

/// The stored bits of a glvq layer, counted here from the format: codes by
/// V_g vectors per row of each group, fp16 G / mu / scale, uint8 bits, signs.
double expected_glvq_bits(const QuantizedLinear& q, int d, int64_t gs) {
  const int64_t B = (q.in + gs - 1) / gs;
  const at::Tensor bits = q.arrays.at("bits").contiguous();
  double bytes = 0;
  for (int64_t g = 0; g < B; ++g) {
    const int64_t cols = std::min(gs, q.in - g * gs), V = (cols + d - 1) / d;
    bytes += static_cast<double>(q.out * V * ((d * bits.data_ptr<uint8_t>()[g] + 7) / 8));
  }
  bytes += static_cast<double>(B * (d * d * 2 + 2 + 2 + 1));
  if (q.attrs.at("incoherence") != 0) bytes += static_cast<double>((q.in + 7) / 8 + (q.out + 7) / 8);
  return bytes * 8 / static_cast<double>(q.out * q.in);
}

/// The options of the separability reference below: groups independent of each
/// other (no feedback, no incoherence, fixed widths, no early stop).
GlvqOptions separable_options(int d) {
  GlvqOptions o = small_options();
  o.cfg.dim = d;
  o.cfg.group_size = 128;
  o.cfg.iters = 8;
  o.cfg.eps = 0;
  o.cfg.companding = false;
  return o;
}

TEST(GlvqLearn, AnyWidthMatchesItsPartsQuantizedAlone) {
  // Without feedback and incoherence the groups of a layer are independent, so a
  // layer with a narrower last group must give what its full groups give as a
  // layer of their own, and its last group what that group gives alone once its
  // padded vector is spelled out as zero columns with zero H (the codec's rule).
  // Padding must change nothing else.
  struct Case {
    int64_t out, in;
    int d;
  };
  for (const char* code : {"box", "shaped"})
  for (const Case& c : std::vector<Case>{{24, 688, 8}, {24, 688, 32}, {16, 960, 8}, {16, 960, 32},
                                         {24, 100, 8}, {24, 100, 32}, {24, 5, 8}, {24, 5, 32}}) {
    SCOPED_TRACE(testing::Message() << code << " [" << c.out << ", " << c.in << "] d " << c.d);
    GlvqOptions o = separable_options(c.d);
    o.cfg.code = code;
    o.cfg.lloyd_iters = 2;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(kSeed + 10 + c.in + c.d);
    const at::Tensor W = at::randn({c.out, c.in}, gen) * 0.02;
    const int64_t gs = std::min<int64_t>(128, (c.in + c.d - 1) / c.d * c.d), full = c.in / gs * gs;
    const int64_t tail = c.in - full, tail_p = (tail + c.d - 1) / c.d * c.d;
    // H block diagonal over the groups, so the layer loss is the sum of the parts' losses.
    at::Tensor H = at::zeros({c.in, c.in});
    for (int64_t g0 = 0; g0 < c.in; g0 += gs) {
      const int64_t n = std::min(gs, c.in - g0);
      const at::Tensor X = at::randn({2 * n + 4, n}, gen);
      H.narrow(0, g0, n).narrow(1, g0, n).copy_(X.t().mm(X) / (2.0 * n + 4));
    }
    const QuantizedLinear q = glvq_quantize_layer(W, H, "layer", o);
    const at::Tensor W_hat = glvq_dequantize(q);
    ASSERT_EQ(W_hat.sizes(), W.sizes());
    EXPECT_NEAR(layer_loss(W, W_hat, H), q.loss, 1e-6 * q.loss);
    EXPECT_DOUBLE_EQ(count_bits(q).total(), expected_glvq_bits(q, c.d, gs));
    double parts = 0;
    if (full > 0) {
      const at::Tensor Wf = W.narrow(1, 0, full).contiguous(), Hf = H.narrow(0, 0, full).narrow(1, 0, full).contiguous();
      const QuantizedLinear qf = glvq_quantize_layer(Wf, Hf, "layer", o);
      const double diff = (W_hat.narrow(1, 0, full) != glvq_dequantize(qf)).to(at::kDouble).mean().item<double>();
      EXPECT_LT(diff, 0.01) << "full groups";
      parts += qf.loss;
    }
    if (tail > 0) {
      const at::Tensor Wt = at::constant_pad_nd(W.narrow(1, full, tail), {0, tail_p - tail});
      const at::Tensor Ht = at::constant_pad_nd(H.narrow(0, full, tail).narrow(1, full, tail),
                                                {0, tail_p - tail, 0, tail_p - tail});
      GlvqOptions ot = o;
      ot.cfg.group_size = static_cast<int>(tail_p);
      const QuantizedLinear qt = glvq_quantize_layer(Wt, Ht, "layer", ot);
      const at::Tensor Wt_hat = glvq_dequantize(qt).narrow(1, 0, tail);
      const double diff = (W_hat.narrow(1, full, tail) != Wt_hat).to(at::kDouble).mean().item<double>();
      EXPECT_LT(diff, 0.01) << "last group";
      parts += qt.loss;
    }
    std::printf("[ parts    ] %s [%ld, %ld] d %d: loss %.6g, parts alone %.6g\n", code, static_cast<long>(c.out),
                static_cast<long>(c.in), c.d, q.loss, parts);
    EXPECT_NEAR(q.loss, parts, 1e-3 * parts);
  }
}

TEST(GlvqLearn, AnyWidthWithTheDefaultPipeline) {
  // Feedback, incoherence and bit allocation on (the default config's choices) at
  // odd widths: the stored result is what was scored, decodes by the codec, is
  // counted exactly, improves on its init, and beats scalar RTN-like zero error floor.
  for (const char* code : {"box", "shaped"})
  for (int d : {8, 32}) {
    for (int64_t in : {int64_t{688}, int64_t{960}, int64_t{100}, int64_t{5}}) {
      SCOPED_TRACE(testing::Message() << code << " in " << in << " d " << d);
      at::Tensor W, H;
      synthetic_layer(32, std::max<int64_t>(in, 8), kSeed + 20 + in, W, H);
      W = W.narrow(1, 0, in).contiguous();
      H = H.narrow(0, 0, in).narrow(1, 0, in).contiguous();
      GlvqOptions o = small_options();
      o.cfg.dim = d;
      o.cfg.group_size = 128;
      o.cfg.iters = 10;
      o.cfg.companding = false;
      o.cfg.error_feedback = true;
      o.cfg.incoherence = true;
      o.cfg.bit_alloc = true;
      o.cfg.code = code;
      o.cfg.lloyd_iters = 2;
      const QuantizedLinear q = glvq_quantize_layer(W, H, "model.layers.0.mlp.down_proj.weight", o);
      const at::Tensor W_hat = glvq_dequantize(q);
      ASSERT_EQ(W_hat.sizes(), W.sizes());
      EXPECT_NEAR(layer_loss(W, W_hat, H), q.loss, 1e-6 * q.loss);
      EXPECT_LE(q.loss, q.loss_init);
      EXPECT_LT(q.loss, 0.5 * layer_loss(W, at::zeros_like(W), H));
      const int64_t gs = q.attrs.at("group_size");
      EXPECT_DOUBLE_EQ(count_bits(q).total(), expected_glvq_bits(q, d, gs));
      // Code bits: 2 on average over the true weights (the narrow group at N, the
      // full ones balanced), plus the padding coordinates of a partial vector.
      const at::Tensor bits = q.arrays.at("bits").to(at::kDouble);
      double wsum = 0;
      for (int64_t g = 0; g < bits.numel(); ++g) wsum += bits[g].item<double>() * std::min(gs, in - g * gs);
      EXPECT_DOUBLE_EQ(wsum / static_cast<double>(in), 2.0);
    }
  }
}

}  // namespace
}  // namespace glvq
