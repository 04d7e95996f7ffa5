// The incoherence transform: orthogonal for powers of two and for m * 2^k,
// inverted exactly by the dequantizer, signs packed losslessly.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>
#include <vector>

#include "quant/glvq.h"
#include "quant/glvq_hadamard.h"

namespace glvq {
namespace {

TEST(GlvqHadamard, TransformIsOrthogonal) {
  for (int64_t n : {1, 2, 8, 12, 96, 128, 384, 704}) {
    const at::Tensor s = glvq_random_signs(n, 7 + n);
    const at::Tensor I = at::eye(n, at::kDouble);
    const at::Tensor T = glvq_orth_apply(I, s).t();  // columns T e_i
    EXPECT_TRUE(at::allclose(at::mm(T, T.t()), I, 0, 1e-10)) << "n " << n;
    EXPECT_TRUE(at::allclose(glvq_orth_apply_t(glvq_orth_apply(I, s), s), I, 0, 1e-10)) << "n " << n;
    // Spread: no entry larger than sqrt(2/n) (the DCT factor) .
    EXPECT_LE(T.abs().max().item<double>(), std::sqrt(2.0 / n) + 1e-12) << "n " << n;
  }
}

TEST(GlvqHadamard, WeightAndHessianRoundTrip) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(51);
  const int64_t out = 384, in = 1024;
  const at::Tensor W = at::randn({out, in}, gen);
  const at::Tensor X = at::randn({64, in}, gen);
  const at::Tensor H = at::mm(X.t(), X);
  const at::Tensor so = glvq_random_signs(out, 1), si = glvq_random_signs(in, 2);
  const at::Tensor Wp = glvq_incoherent_weight(W, so, si);
  EXPECT_LT((glvq_coherent_weight(Wp, so, si) - W).abs().max().item<float>(), 1e-5);
  // The loss is invariant: tr(E H E^T) = tr(E' H' E'^T).
  const at::Tensor E = at::randn({out, in}, gen), Ep = glvq_incoherent_weight(E, so, si);
  const at::Tensor Hp = glvq_incoherent_hessian(H, si);
  const double a = (at::mm(E.to(at::kDouble), H.to(at::kDouble)) * E.to(at::kDouble)).sum().item<double>();
  const double b = (at::mm(Ep.to(at::kDouble), Hp.to(at::kDouble)) * Ep.to(at::kDouble)).sum().item<double>();
  EXPECT_NEAR(a, b, 1e-4 * a);
}

TEST(GlvqHadamard, SignsPackLosslessly) {
  for (int64_t n : {1, 7, 8, 9, 384}) {
    const at::Tensor s = glvq_random_signs(n, 100 + n);
    const at::Tensor p = glvq_pack_signs(s);
    EXPECT_EQ(p.numel(), (n + 7) / 8);
    EXPECT_TRUE(at::equal(glvq_unpack_signs(p, n), s));
  }
  EXPECT_FALSE(at::equal(glvq_random_signs(64, 1), glvq_random_signs(64, 2)));
  EXPECT_TRUE(at::equal(glvq_random_signs(64, 1), glvq_random_signs(64, 1)));
}

TEST(GlvqHadamard, DequantizeInvertsTheTransform) {
  // A stored layer whose W' is decoded, then mapped back: compare with the
  // transform applied by hand to the decode of the same arrays without signs.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(52);
  const at::Tensor W = at::randn({48, 384}, gen) * 0.02;
  const at::Tensor H = at::eye(384);
  GlvqOptions o;
  o.bits = 4;
  o.cfg.iters = 2;
  o.cfg.incoherence = true;
  o.cfg.bit_alloc = false;
  o.cfg.error_feedback = false;
  o.cfg.companding = false;
  o.cfg.lr = 0.1;
  const QuantizedLinear q = glvq_quantize_layer(W, H, "layer", o);
  QuantizedLinear plain = q;
  plain.attrs["incoherence"] = 0;
  const at::Tensor Wp_hat = glvq_dequantize(plain);
  const at::Tensor so = glvq_unpack_signs(q.arrays.at("signs_out"), 48);
  const at::Tensor si = glvq_unpack_signs(q.arrays.at("signs_in"), 384);
  const at::Tensor W_hat = glvq_dequantize(q);
  EXPECT_LT((glvq_coherent_weight(Wp_hat, so, si) - W_hat).abs().max().item<float>(), 1e-6);
  // And 4 bits reconstruct W well in the original space.
  EXPECT_LT(((W_hat - W).square().sum() / W.square().sum()).item<float>(), 0.05);
}

/// T = (C_m (x) H_p) D written out entry by entry in double, from the definition in
/// glvq_hadamard.h: Sylvester's Hadamard matrix with entries (-1)^popcount(b & b') / sqrt(p),
/// the orthonormal DCT-II, index i = a * p + b.
at::Tensor reference_transform(int64_t n, const at::Tensor& signs) {
  int64_t p = 1;
  while (n % (2 * p) == 0) p *= 2;
  const int64_t m = n / p;
  const double pi = std::acos(-1.0);
  at::Tensor T = at::empty({n, n}, at::kDouble);
  double* t = T.data_ptr<double>();
  const at::Tensor sd = signs.to(at::kDouble).contiguous();
  const double* s = sd.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t a = i / p, b = i % p, a2 = j / p, b2 = j % p;
      const double c = std::sqrt((a == 0 ? 1.0 : 2.0) / m) * std::cos(pi * (a2 + 0.5) * a / m);
      const double h = (__builtin_popcountll(static_cast<uint64_t>(b & b2)) % 2 ? -1.0 : 1.0) / std::sqrt(double(p));
      t[i * n + j] = c * h * s[j];
    }
  return T;
}

TEST(GlvqHadamard, AnySizeMatchesTheDefinition) {
  // Odd m (15 = 3 * 5, 45), prime m (5, 97, 688 = 43 * 16, 100 = 25 * 4 with m a prime
  // square), m = n (odd n: 1, 3, 97, 101) and real widths (960 = 15 * 64, 896 = 7 * 128).
  for (int64_t n : {1, 3, 5, 15, 45, 97, 100, 101, 688, 896, 960}) {
    const at::Tensor s = glvq_random_signs(n, 300 + n);
    const at::Tensor ref = reference_transform(n, s);
    const at::Tensor I = at::eye(n, at::kDouble);
    const at::Tensor T = glvq_orth_apply(I, s).t();  // columns T e_i
    EXPECT_LT((T - ref).abs().max().item<double>(), 1e-12) << "n " << n;
    EXPECT_LT((at::mm(ref, ref.t()) - I).abs().max().item<double>(), 1e-12) << "n " << n;
    EXPECT_LT((glvq_orth_apply_t(glvq_orth_apply(I, s), s) - I).abs().max().item<double>(), 1e-12) << "n " << n;
  }
}

TEST(GlvqHadamard, OddShapesRoundTripAndKeepTheLoss) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(53);
  for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{97, 100}, {5, 688}, {15, 15}, {7, 101}}) {
    const at::Tensor W = at::randn({out, in}, gen).to(at::kDouble);
    const at::Tensor X = at::randn({2 * in, in}, gen).to(at::kDouble);
    const at::Tensor H = at::mm(X.t(), X);
    const at::Tensor so = glvq_random_signs(out, 3 + out), si = glvq_random_signs(in, 4 + in);
    const at::Tensor Wp = glvq_incoherent_weight(W, so, si);
    // W' = T_out W T_in^T against the definition.
    const at::Tensor ref = at::mm(at::mm(reference_transform(out, so), W), reference_transform(in, si).t());
    EXPECT_LT((Wp - ref).abs().max().item<double>(), 1e-10) << out << " x " << in;
    EXPECT_LT((glvq_coherent_weight(Wp, so, si) - W).abs().max().item<double>(), 1e-10) << out << " x " << in;
    const at::Tensor E = at::randn({out, in}, gen).to(at::kDouble), Ep = glvq_incoherent_weight(E, so, si);
    const double a = (at::mm(E, H) * E).sum().item<double>();
    const double b = (at::mm(Ep, glvq_incoherent_hessian(H, si)) * Ep).sum().item<double>();
    EXPECT_NEAR(a, b, 1e-10 * a) << out << " x " << in;
  }
}

}  // namespace
}  // namespace glvq
