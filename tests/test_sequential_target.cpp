// quant.sequential's statistics and target (stats/sequential_target.h) against an independent
// least-squares solve over the stacked tokens, and the property that makes it the right target:
// quantizing it under H minimises the true output error, so its own output error is the least.
#include <gtest/gtest.h>

#include "stats/sequential_target.h"

#include <ATen/ATen.h>

namespace glvq {
namespace {

TEST(SequentialTarget, IsTheLeastSquaresMapOntoTheFpOutputs) {
  at::manual_seed(41);
  const int64_t n = 600, in = 24, out = 10;
  const at::Tensor X = at::randn({n, in}, at::kDouble);              // FP-path inputs
  const at::Tensor Xq = X + 0.3 * at::randn({n, in}, at::kDouble);   // the same tokens, quantized path
  const at::Tensor W = at::randn({out, in}, at::kDouble);
  CrossAccumulator acc;
  for (int64_t i = 0; i < n; i += 128) {  // in micro-batches, as the learn stage adds them
    const int64_t m = std::min<int64_t>(128, n - i);
    acc.add(X.narrow(0, i, m).to(at::kFloat), Xq.narrow(0, i, m).to(at::kFloat));
  }
  EXPECT_EQ(acc.tokens(), n);
  const at::Tensor Wt = sequential_target(W.to(at::kFloat), acc.C(), acc.H(), 0.0).to(at::kDouble);
  // independent: min ||Xq W'^T - X W^T|| by QR of the stacked tokens
  const at::Tensor ref = std::get<0>(at::linalg_lstsq(Xq, at::matmul(X, W.t()))).t();
  EXPECT_LT((Wt - ref).abs().max().item<double>(), 1e-3 * ref.abs().max().item<double>());
  // its output error is below the FP weight's on the quantized-path inputs
  const at::Tensor target = at::matmul(X, W.t());
  const double e_w = (at::matmul(Xq, W.t()) - target).square().sum().item<double>();
  const double e_t = (at::matmul(Xq, Wt.t()) - target).square().sum().item<double>();
  EXPECT_LT(e_t, 0.9 * e_w);
}

TEST(SequentialTarget, EqualInputsGiveTheWeightBackAndDampingShrinksTowardIt) {
  at::manual_seed(42);
  const int64_t n = 400, in = 16, out = 6;
  const at::Tensor X = at::randn({n, in});
  const at::Tensor W = at::randn({out, in});
  CrossAccumulator acc;
  acc.add(X, X);
  EXPECT_TRUE(at::allclose(acc.H(), acc.C()));
  EXPECT_TRUE(at::allclose(sequential_target(W, acc.C(), acc.H(), 0.0), W, 1e-4, 1e-4));
  // with damping lambda: W H (H + lambda I)^-1, strictly inside W's norm
  const at::Tensor d = sequential_target(W, acc.C(), acc.H(), 0.5);
  EXPECT_LT(d.norm().item<double>(), W.norm().item<double>());
  EXPECT_GT(d.norm().item<double>(), 0.3 * W.norm().item<double>());
}

}  // namespace
}  // namespace glvq
