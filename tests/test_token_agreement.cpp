// KL(P_fp || P_q) and top-1 agreement against a plain fp64 computation.
#include "eval/token_agreement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace glvq {
namespace {

std::vector<double> log_softmax_row(const std::vector<double>& z) {
  double m = -std::numeric_limits<double>::infinity();
  for (double v : z) m = std::max(m, v);
  double s = 0;
  for (double v : z) s += std::exp(v - m);
  std::vector<double> out;
  for (double v : z) out.push_back(v - m - std::log(s));
  return out;
}

TEST(TokenAgreement, MatchesFp64KlPercentileAndTop1) {
  const int n = 301, V = 37;
  std::mt19937 rng(7);
  std::normal_distribution<double> g(0, 2);
  std::vector<std::vector<double>> a(n), b(n);
  std::vector<double> kl(n);
  int same = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<double> za(V), zb(V);
    for (int v = 0; v < V; ++v) {
      za[v] = g(rng);
      zb[v] = za[v] + (i % 3) * 0.3 * g(rng);  // a third of the rows agree exactly
    }
    za[i % V] = -std::numeric_limits<double>::infinity();  // a token the FP model excludes
    a[i] = log_softmax_row(za);
    b[i] = log_softmax_row(zb);
    for (int v = 0; v < V; ++v)
      if (std::isfinite(a[i][v])) kl[i] += std::exp(a[i][v]) * (a[i][v] - b[i][v]);
    same += std::max_element(a[i].begin(), a[i].end()) - a[i].begin() ==
            std::max_element(b[i].begin(), b[i].end()) - b[i].begin();
  }
  auto tensor = [&](const std::vector<std::vector<double>>& rows, int from, int to) {
    at::Tensor t = at::empty({to - from, V}, at::kDouble);
    for (int i = from; i < to; ++i)
      for (int v = 0; v < V; ++v) t[i - from][v] = rows[i][v];
    return t.to(at::kFloat);
  };
  TokenAgreement ta;
  ta.add(tensor(a, 0, 100), tensor(b, 0, 100));  // in two calls: the state accumulates
  ta.add(tensor(a, 100, n), tensor(b, 100, n));
  ASSERT_EQ(ta.count(), n);
  double mean = 0;
  for (double k : kl) mean += k / n;
  std::vector<double> sorted = kl;
  std::sort(sorted.begin(), sorted.end());
  const double p99 = sorted[size_t(std::ceil(0.99 * n)) - 1];
  EXPECT_NEAR(ta.kl_mean(), mean, 1e-5 * mean);
  EXPECT_NEAR(ta.kl_p99(), p99, 1e-5 * p99);
  EXPECT_DOUBLE_EQ(ta.top1(), double(same) / n);
  EXPECT_LT(ta.top1(), 1.0);
  EXPECT_GT(ta.top1(), 0.33);
}

TEST(TokenAgreement, IdenticalDistributionsAgreeFully) {
  at::Tensor logp = at::log_softmax(at::randn({50, 11}), -1);
  TokenAgreement ta;
  ta.add(logp, logp.clone());
  EXPECT_EQ(ta.kl_mean(), 0.0);
  EXPECT_EQ(ta.kl_p99(), 0.0);
  EXPECT_EQ(ta.top1(), 1.0);
}

}  // namespace
}  // namespace glvq
