// Error feedback (LDLQ with blocks of d or gs columns): the layer loss equals
// the sum of the blocks' losses in their own metrics, and feedback lowers the
// loss of a layer whose inputs are correlated.
#include <gtest/gtest.h>

#include <cstdio>

#include "quant/glvq.h"
#include "quant/glvq_feedback.h"
#include "quant/glvq_group_ops.h"

namespace glvq {
namespace {

at::Tensor correlated_hessian(int64_t in, at::Generator& gen) {
  const at::Tensor X =
      at::mm(at::randn({4 * in, in / 4}, gen), at::randn({in / 4, in}, gen)) + 0.2 * at::randn({4 * in, in}, gen);
  return at::mm(X.t(), X) / (4.0 * in);
}

TEST(GlvqFeedback, LayerLossIsTheSumOfBlockLosses) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(41);
  std::printf("seed 41\n");
  const int64_t out = 32, in = 64, d = 8;
  const at::Tensor W = at::randn({out, in}, gen).to(at::kDouble);
  const at::Tensor H = correlated_hessian(in, gen).to(at::kDouble);
  const at::Tensor U = glvq_inverse_cholesky(H, 0.0, "test").to(at::kDouble);
  for (int64_t block : {d, int64_t{32}}) {
    const at::Tensor F = glvq_feedback_matrix(U, block).to(at::kDouble);
    // LDLQ by hand with a crude scalar rounding, in double.
    at::Tensor T = W.clone(), E = at::zeros_like(W), W_hat = at::zeros_like(W);
    for (int64_t c0 = 0; c0 < in; c0 += block) {
      const int64_t c1 = c0 + block;
      const at::Tensor t = T.slice(1, c0, c1).clone();
      const at::Tensor q = at::round(t * 2) / 2;
      W_hat.slice(1, c0, c1).copy_(q);
      E.slice(1, c0, c1).copy_(t - q);
      if (c1 < in) T.slice(1, c1, in).sub_(at::mm(t - q, F.slice(0, c0, c1).slice(1, c1, in)));
    }
    const at::Tensor Ew = W - W_hat;
    const double lhs = (at::mm(Ew, H) * Ew).sum().item<double>();
    const at::Tensor Ub = glvq_diag_blocks(U, block), Ui = at::linalg_inv(Ub);
    const at::Tensor D = at::bmm(Ui, Ui.transpose(1, 2));  // (U_pp^T U_pp)^-1
    const at::Tensor Eb = glvq_group_view(E, block);       // [P, out, block]
    const double rhs = glvq_group_losses(Eb, D).sum().item<double>();
    EXPECT_NEAR(lhs, rhs, 1e-6 * lhs) << "block " << block;  // U is float
    // The metrics the learner uses are those D's.
    EXPECT_TRUE(at::allclose(glvq_feedback_metrics(U, block).to(at::kDouble), D, 1e-6, 1e-9));
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
