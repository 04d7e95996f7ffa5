// Error feedback (LDLQ with blocks of d or gs columns) against fp64 references
// computed from H itself: the damped factor, the feedback matrix and block
// metrics, the identity tr(E H E^T) = sum_p tr(e_p D_p e_p^T) through the
// production encoder (glvq_encode_layer), the shared damped Cholesky's retry
// rule, and that feedback lowers the loss of a layer with correlated inputs.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/error.h"
#include "quant/damped_cholesky.h"
#include "quant/glvq.h"
#include "quant/glvq_encode.h"
#include "quant/glvq_feedback.h"
#include "quant/glvq_group_ops.h"

#include "glvq_ref64.h"

namespace glvq {
namespace {

at::Tensor correlated_hessian(int64_t in, at::Generator& gen) {
  const at::Tensor X =
      at::mm(at::randn({4 * in, in / 4}, gen), at::randn({in / 4, in}, gen)) + 0.2 * at::randn({4 * in, in}, gen);
  return at::mm(X.t(), X) / (4.0 * in);
}

/// H + damp * mean(diag H) * I in double.
at::Tensor damped(const at::Tensor& H, double damp) {
  const at::Tensor Hd = H.to(at::kDouble);
  return Hd + damp * Hd.diagonal().mean() * at::eye(H.size(0), at::kDouble);
}

/// D_p for blocks of B columns, straight from the definition of LDLQ's metric:
/// the error of block p, once the later blocks absorb what they can, costs
/// e_p D_p e_p^T with D_p = [ ((Hd^-1)[:c1, :c1])^-1 ][c0:c1, c0:c1]
/// (c0, c1 the block's columns): a plain inverse of a leading block, no Cholesky.
at::Tensor metrics_from_h(const at::Tensor& Hd, int64_t block) {
  const int64_t in = Hd.size(0);
  const at::Tensor Hinv = at::linalg_inv(Hd);
  std::vector<at::Tensor> D;
  for (int64_t c0 = 0; c0 < in; c0 += block) {
    const int64_t c1 = c0 + block;
    D.push_back(at::linalg_inv(Hinv.slice(0, 0, c1).slice(1, 0, c1)).slice(0, c0, c1).slice(1, c0, c1));
  }
  return at::stack(D);
}

/// max |a - b| / max |b|.
double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         b.to(at::kDouble).abs().max().item<double>();
}

TEST(GlvqFeedback, FactorsMatchTheirDefinitionsFromH) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(41);
  std::printf("seed 41\n");
  const int64_t in = 64;
  const at::Tensor H = correlated_hessian(in, gen);
  const at::Tensor Hd = damped(H, 0.01);
  const at::Tensor U = glvq_inverse_cholesky(H, 0.01, "test");
  ASSERT_EQ(U.scalar_type(), at::kFloat);
  const at::Tensor Ud = U.to(at::kDouble);
  EXPECT_TRUE(at::equal(Ud, Ud.triu()));
  EXPECT_LT(rel_err(at::mm(Ud.t(), Ud), at::linalg_inv(Hd)), 1e-4);  // U is float
  for (int64_t block : {int64_t{8}, int64_t{32}}) {
    SCOPED_TRACE("block " + std::to_string(block));
    const at::Tensor F = glvq_feedback_matrix(U, block).to(at::kDouble);
    const at::Tensor D = glvq_feedback_metrics(U, block).to(at::kDouble);
    const at::Tensor D_ref = metrics_from_h(Hd, block);
    EXPECT_LT(rel_err(D, D_ref), 1e-4);
    // F is block upper triangular with identity diagonal blocks, and F Hd F^T = blockdiag(D).
    for (int64_t p = 0; p < in / block; ++p) {
      const at::Tensor row = F.slice(0, p * block, (p + 1) * block);
      if (p > 0) {
        EXPECT_TRUE(at::equal(row.slice(1, 0, p * block), at::zeros({block, p * block}, at::kDouble)));
      }
      EXPECT_LT((row.slice(1, p * block, (p + 1) * block) - at::eye(block, at::kDouble)).abs().max().item<double>(),
                1e-5);
    }
    const at::Tensor FHF = at::mm(at::mm(F, Hd), F.t());
    at::Tensor bd = at::zeros_like(Hd);
    for (int64_t p = 0; p < in / block; ++p)
      bd.slice(0, p * block, (p + 1) * block).slice(1, p * block, (p + 1) * block).copy_(D_ref[p]);
    EXPECT_LT(rel_err(FHF, bd), 1e-4);
  }
}

TEST(GlvqFeedback, EncoderErrorsSumToTheLayerLoss) {
  // glvq_encode_layer with feedback, by vector (block d) and by group (block
  // gs), both roundings, mixed bit widths: the layer loss of the decoded codes
  // (fp64, tests/glvq_ref64.h) equals the sum of the encoder's block errors in
  // the metrics D_p computed from H. A wrong or missing feed-forward breaks it.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(43);
  std::printf("seed 43\n");
  const int64_t out = 32, in = 128, d = 8, gs = 64, B = in / gs;
  const at::Tensor Wp = at::randn({out, in}, gen);
  const at::Tensor H = correlated_hessian(in, gen);
  const double damp = 0.01;
  const at::Tensor Hd = damped(H, damp);
  const at::Tensor U = glvq_inverse_cholesky(H, damp, "test");
  GlvqParams p;
  p.G = (at::eye(d).expand({B, d, d}) + 0.1 * at::randn({B, d, d}, gen)) * 0.6;
  p.mu = at::zeros({B});
  p.scale = at::ones({B});
  p.bits = at::tensor(std::vector<int64_t>{2, 3}, at::kLong);
  const GlvqParams ps = glvq_round_to_storage(p);
  double plain_loss = 0;
  {
    GlvqEncodeOptions o;
    o.companding = false;
    const GlvqEncoded enc = glvq_encode_layer(Wp, gs, ps, o);
    plain_loss = ref64::loss(Wp, ref64::decode(out, in, d, gs, enc.codes, ps.bits, ps.G, ps.mu, ps.scale), Hd);
  }
  for (const std::string rounding : {"babai", "nearest_plane"}) {
    for (int64_t fb : {d, gs}) {
      SCOPED_TRACE(rounding + ", feedback block " + std::to_string(fb));
      GlvqEncodeOptions o;
      o.companding = false;
      o.rounding = rounding;
      o.F_full = glvq_feedback_matrix(U, fb);
      o.feedback_block = fb;
      const GlvqEncoded enc = glvq_encode_layer(Wp, gs, ps, o);
      const at::Tensor W_hat = ref64::decode(out, in, d, gs, enc.codes, ps.bits, ps.G, ps.mu, ps.scale);
      const double lhs = ref64::loss(Wp, W_hat, Hd);
      ASSERT_TRUE(enc.errors.defined());
      const at::Tensor e = glvq_group_view(glvq_group_unview(enc.errors).to(at::kDouble), fb);  // [P, out, fb]
      const at::Tensor D = metrics_from_h(Hd, fb);
      const double rhs = (at::bmm(e, D) * e).sum().item<double>();
      std::printf("%s, block %ld: tr(E H E^T) %.6g, sum of block losses %.6g (no feedback %.6g)\n",
                  rounding.c_str(), static_cast<long>(fb), lhs, rhs, plain_loss);
      EXPECT_NEAR(lhs, rhs, 1e-4 * lhs);
      // The last block's target is W' minus everything fed to it: its error is
      // W' - W_hat there minus what the earlier blocks passed on, so not W' - W_hat.
      EXPECT_GT((e[e.size(0) - 1] - (Wp.to(at::kDouble) - W_hat).slice(1, in - fb, in)).abs().max().item<double>(),
                1e-3);
      // Each group's recorded target is what its errors were measured against.
      if (fb == gs) {
        EXPECT_LT(rel_err(enc.targets - enc.errors, glvq_group_view(W_hat, gs)), 1e-5);
      }
      EXPECT_LT(lhs, plain_loss);
    }
  }
}

TEST(GlvqFeedback, DampedCholeskyRetryRule) {
  // The rule GPTQ and GLVQ share: a damping of 0 is retried as 1e-4, a positive
  // one x10, at most 4 retries; each result is the factor of the damping it
  // settled on (checked against the inverse of H + damp * mean(diag H) * I).
  auto factor_of = [](const at::Tensor& H, double damp) {
    const at::Tensor U = damped_inverse_cholesky(H, damp, "blk.0.q", "(test)").to(at::kDouble);
    return at::mm(U.t(), U);
  };
  auto with_eigenvalues = [](std::vector<double> lambda) {
    const int64_t n = static_cast<int64_t>(lambda.size());
    auto gen = at::make_generator<at::CPUGeneratorImpl>(44);
    const at::Tensor Q = std::get<0>(at::linalg_qr(at::randn({n, n}, gen, at::kDouble)));
    return at::mm(at::mm(Q, at::diag(at::tensor(lambda, at::kDouble))), Q.t());
  };
  // A dead input (zero row and column): singular at damp = 0, fine at 1e-4.
  at::Tensor H0 = with_eigenvalues({1, 2, 3, 4, 5, 6});
  H0.select(0, 2).zero_();
  H0.select(1, 2).zero_();
  EXPECT_LT(rel_err(factor_of(H0, 0.0), at::linalg_inv(damped(H0, 1e-4))), 1e-5);
  // GLVQ's feedback factor follows the same rule.
  const at::Tensor Ug = glvq_inverse_cholesky(H0, 0.0, "blk.0.q").to(at::kDouble);
  EXPECT_LT(rel_err(at::mm(Ug.t(), Ug), at::linalg_inv(damped(H0, 1e-4))), 1e-5);
  // Smallest eigenvalue -c with mean diagonal m = (15 - c) / 6: 0.01 m < c < 0.1 m needs one retry.
  const double c1 = 0.125 / (1 + 0.05 / 6);  // c = 0.05 m
  const at::Tensor H1 = with_eigenvalues({-c1, 1, 2, 3, 4, 5});
  EXPECT_LT(rel_err(factor_of(H1, 0.01), at::linalg_inv(damped(H1, 0.1))), 1e-5);
  // c = 14: 10 m < c < 100 m, the fourth and last retry (damp = 100) succeeds.
  const at::Tensor H4 = with_eigenvalues({-14, 1, 2, 3, 4, 5});
  EXPECT_LT(rel_err(factor_of(H4, 0.01), at::linalg_inv(damped(H4, 100))), 1e-5);
  // c = 14.5: c > 100 m, no retry is enough; the error names the layer and the remedy.
  const at::Tensor H5 = with_eigenvalues({-14.5, 1, 2, 3, 4, 5});
  try {
    damped_inverse_cholesky(H5, 0.01, "blk.0.q", "collect more samples (calib.samples)");
    ADD_FAILURE() << "an H no retry can fix was accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("blk.0.q"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("not positive definite"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("calib.samples"), std::string::npos) << e.message();
  }
}

TEST(GlvqFeedback, LowersTheLossOnCorrelatedInputs) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(42);
  std::printf("seed 42\n");
  const at::Tensor W = at::randn({64, 256}, gen) * 0.02;
  const at::Tensor H = correlated_hessian(256, gen);
  GlvqOptions o;
  o.cfg.code = "box";  // these tests are about the box code's Adam learning (test_glvq_shaped.cpp: the shaped code)
  o.bits = 2;
  o.cfg.group_size = 64;
  o.cfg.iters = 10;
  o.cfg.lr = 0.03;
  o.cfg.dim = 8;
  o.cfg.companding = false;
  o.cfg.rounding = "babai";
  o.cfg.incoherence = false;
  o.cfg.bit_alloc = false;
  o.cfg.error_feedback = false;
  const QuantizedLinear plain = glvq_quantize_layer(W, H, "layer", o);
  o.cfg.error_feedback = true;
  const QuantizedLinear fb = glvq_quantize_layer(W, H, "layer", o);
  o.feedback_block = 64;
  const QuantizedLinear fb_group = glvq_quantize_layer(W, H, "layer", o);
  std::printf("loss plain %.6g, feedback by vector %.6g, by group %.6g\n", plain.loss, fb.loss, fb_group.loss);
  EXPECT_LT(fb_group.loss, 0.9 * plain.loss);
  EXPECT_LT(fb.loss, fb_group.loss);
}

}  // namespace
}  // namespace glvq
