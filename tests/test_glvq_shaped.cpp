// GLVQ's shaped code on whole layers (src/quant/glvq_shaped*.h, the shaped
// branch of the codec reference) against independent fp64 computations.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "quant/glvq.h"
#include "quant/glvq_codebook.h"
#include "quant/glvq_codec.h"
#include "quant/glvq_feedback.h"
#include "quant/glvq_shaped_ops.h"

namespace glvq {
namespace {

constexpr uint64_t kSeed = 20251202;

at::Tensor random_hessian(int64_t n, uint64_t seed) {
  at::manual_seed(seed);
  const at::Tensor X = at::randn({4 * n, n}, at::kDouble) * at::exp(at::randn({1, n}, at::kDouble) * 0.5);
  return (X.t().mm(X) / double(4 * n)).to(at::kFloat);
}

GlvqShapedParams random_params(int64_t B, int64_t d, int bits, double step) {
  const at::Tensor G = (at::eye(d).unsqueeze(0) + 0.1 * at::randn({B, d, d})) * step;
  return {G.to(at::kHalf).to(at::kFloat), at::full({B}, 1.0f), at::full({B}, int64_t(bits))};
}

TEST(GlvqShaped, FeedbackIdentityThroughTheEncoder) {
  // tr(E H_d E^T) of the final reconstruction equals the sum over vector columns of
  // e_p D_p e_p^T (e_p against the fed-forward target), H_d = the damped H the
  // feedback factor was built from, D_p computed here in fp64 from H_d alone.
  for (int64_t d : {8, 16}) {
    const int64_t out = 24, in = 64, gs = 32, B = in / gs;
    at::manual_seed(kSeed);
    const at::Tensor W = at::randn({out, in});
    const at::Tensor H = random_hessian(in, kSeed + 1);
    const double damp = 0.01;
    const at::Tensor U = glvq_inverse_cholesky(H, damp, "test");
    const at::Tensor F = glvq_feedback_matrix(U, d);
    const GlvqShapedParams p = random_params(B, d, 2, 0.25);
    const GlvqShapedCodes c = glvq_shaped_encode_layer(W, gs, p, F, /*inter=*/true);

    at::Tensor Hd = H.to(at::kDouble);
    Hd = Hd + at::eye(in, at::kDouble) * damp * Hd.diagonal().mean().item<double>();
    const at::Tensor Ud = at::linalg_cholesky(at::linalg_inv(Hd), /*upper=*/true);
    double rhs = 0;
    const at::Tensor e = (c.T - c.W_hat).to(at::kDouble);
    for (int64_t a = 0; a < in; a += d) {
      const at::Tensor Upp = Ud.slice(0, a, a + d).slice(1, a, a + d);
      const at::Tensor Dp = at::linalg_inv(Upp.t().mm(Upp));
      const at::Tensor ep = e.slice(1, a, a + d);
      rhs += (ep.mm(Dp) * ep).sum().item<double>();
    }
    const at::Tensor E = W.to(at::kDouble) - c.W_hat.to(at::kDouble);
    const double lhs = (E.mm(Hd) * E).sum().item<double>();
    EXPECT_NEAR(lhs, rhs, 1e-4 * lhs) << "d = " << d;
    // The production per-group losses sum to the same.
    const at::Tensor D = glvq_feedback_metrics(U, d);
    EXPECT_NEAR(glvq_shaped_group_losses(c, D, gs).sum().item<double>(), lhs, 1e-4 * lhs) << "d = " << d;
  }
}

/// sum_p sum_r (t/s - G c)^T D_p (t/s - G c) over group g, in fp64 with plain loops.
double lloyd_objective(const GlvqShapedCodes& c, const at::Tensor& D, double s, int64_t g, int64_t gs, int64_t d,
                       const at::Tensor& G) {
  const at::Tensor T = c.T.to(at::kDouble), C = c.C.to(at::kDouble), Gd = G.to(at::kDouble), Dd = D.to(at::kDouble);
  double J = 0;
  for (int64_t a = g * gs; a < (g + 1) * gs; a += d) {
    const at::Tensor e = T.slice(1, a, a + d) / s - C.slice(1, a, a + d).mm(Gd.t());
    J += (e.mm(Dd.select(0, a / d)) * e).sum().item<double>();
  }
  return J;
}

TEST(GlvqShaped, LloydUpdateIsTheLeastSquaresOptimum) {
  const int64_t out = 40, in = 48, gs = 24, d = 8, B = in / gs;
  at::manual_seed(kSeed + 2);
  const at::Tensor W = at::randn({out, in});
  const at::Tensor H = random_hessian(in, kSeed + 3);
  const at::Tensor U = glvq_inverse_cholesky(H, 0.01, "test");
  const at::Tensor F = glvq_feedback_matrix(U, d), D = glvq_feedback_metrics(U, d);
  GlvqShapedParams p = random_params(B, d, 2, 0.3);
  p.scale = at::full({B}, 0.5f);
  const GlvqShapedCodes c = glvq_shaped_encode_layer(W, gs, p, F, /*inter=*/true);
  const at::Tensor G = glvq_shaped_lloyd_update(c, D, p.scale, gs, d, /*ridge=*/0.0, p.G);
  for (int64_t g = 0; g < B; ++g) {
    const double J = lloyd_objective(c, D, 0.5, g, gs, d, G.select(0, g));
    EXPECT_LT(J, lloyd_objective(c, D, 0.5, g, gs, d, p.G.select(0, g)));
    // Central differences along random directions vanish at the optimum, and the
    // objective grows on both sides (it is a convex quadratic).
    for (int t = 0; t < 5; ++t) {
      const at::Tensor dir = at::randn({d, d}).to(at::kDouble) * 1e-3;
      const double jp = lloyd_objective(c, D, 0.5, g, gs, d, G.select(0, g).to(at::kDouble) + dir);
      const double jm = lloyd_objective(c, D, 0.5, g, gs, d, G.select(0, g).to(at::kDouble) - dir);
      EXPECT_GT(jp, J * (1 - 1e-9));
      EXPECT_GT(jm, J * (1 - 1e-9));
      EXPECT_LT(std::fabs(jp - jm), 1e-3 * (jp + jm - 2 * J) + 1e-7 * J) << "group " << g;
    }
  }
}

TEST(GlvqShaped, LloydKeepsTheRowsTheMetricNeverSees) {
  // A coordinate whose metric is 0 in every vector (a dead input, a padding
  // column of a narrower last group) gives its row of G no data: that row keeps
  // the previous G's, so G stays invertible; the other rows are still the
  // least-squares optimum.
  const int64_t out = 32, in = 32, gs = 32, d = 8;
  at::manual_seed(kSeed + 6);
  const at::Tensor W = at::randn({out, in});
  const at::Tensor U = glvq_inverse_cholesky(random_hessian(in, kSeed + 7), 0.01, "test");
  const at::Tensor F = glvq_feedback_matrix(U, d);
  const at::Tensor keep = (at::arange(d) != 3).to(at::kFloat);
  const at::Tensor D = glvq_feedback_metrics(U, d) * keep.reshape({1, d, 1}) * keep.reshape({1, 1, d});
  GlvqShapedParams p = random_params(1, d, 2, 0.3);
  const GlvqShapedCodes c = glvq_shaped_encode_layer(W, gs, p, F, /*inter=*/true);
  const at::Tensor G = glvq_shaped_lloyd_update(c, D, p.scale, gs, d, 1e-6, p.G).select(0, 0);
  for (int64_t j = 0; j < d; ++j)
    EXPECT_NEAR(G[3][j].item<double>(), p.G[0][3][j].item<double>(), 1e-5) << "column " << j;
  EXPECT_GT(std::fabs(at::linalg_det(G.to(at::kDouble)).item<double>()), 1e-12);
  EXPECT_LT(lloyd_objective(c, D, 1.0, 0, gs, d, G), lloyd_objective(c, D, 1.0, 0, gs, d, p.G.select(0, 0)));
  // With a zero previous G the row is 0 (the ridge's value): what the rule guards against.
  const at::Tensor G0 = glvq_shaped_lloyd_update(c, D, p.scale, gs, d, 1e-6, at::zeros_like(p.G)).select(0, 0);
  EXPECT_LT(G0[3].abs().max().item<double>(), 1e-6);
}

TEST(GlvqShaped, CodecReferenceDecodesWhatTheEncoderChose) {
  // Encode with the codec reference, then rebuild every vector by hand:
  // w' = s * G c with c the decoded sub-codewords, and check that each sub-code
  // is the nearest point of its book to y = G^-1 (w / s) (brute force).
  const int d = 16, out = 6, in = 32, gs = 16;
  GlvqLayout L;
  L.out = out;
  L.in = in;
  L.dim = d;
  L.group_size = gs;
  L.code = GlvqCode::shaped;
  at::manual_seed(kSeed + 4);
  const at::Tensor W = at::randn({out, in}).contiguous();
  const GlvqShapedParams sp = random_params(in / gs, d, 2, 0.3);
  const std::vector<uint8_t> bits = {2, 1};
  const std::vector<float> scale = {1.0f, 0.75f}, mu = {0.0f, 0.0f};
  const at::Tensor G = sp.G.contiguous(), Gi = at::linalg_inv(G.to(at::kDouble)).to(at::kFloat).contiguous();
  const GlvqGroupParams p{bits.data(), scale.data(), mu.data(), G.data_ptr<float>(), Gi.data_ptr<float>()};
  const std::vector<int64_t> off = glvq_group_offsets(L, bits.data());
  std::vector<uint8_t> codes(off.back());
  glvq_encode_ref(L, p, W.data_ptr<float>(), codes.data());
  std::vector<float> W_hat(out * in);
  glvq_decode_ref(L, p, codes.data(), W_hat.data());
  for (int g = 0; g < 2; ++g) {
    const int b = bits[g];
    const uint64_t npts = uint64_t(1) << (8 * b);
    std::vector<float> pts(npts * 8);
    for (uint64_t k = 0; k < npts; ++k) glvq_shaped_decode(b, k, &pts[k * 8]);
    const at::Tensor Gg = G.select(0, g).to(at::kDouble), Gig = Gi.select(0, g).to(at::kDouble);
    for (int r = 0; r < out; ++r) {
      const at::Tensor w = W.select(0, r).slice(0, g * gs, g * gs + d).to(at::kDouble);
      const at::Tensor yt = Gig.mv(w / scale[g]).contiguous();
      const std::vector<double> y(yt.data_ptr<double>(), yt.data_ptr<double>() + d);
      std::vector<float> c(d);
      const uint8_t* vec = codes.data() + off[g] + r * glvq_vec_bytes(d, b);
      for (int k = 0; k < d / 8; ++k) {
        uint64_t code = 0;
        for (int i = 0; i < b; ++i) code |= uint64_t(vec[b * k + i]) << (8 * i);
        glvq_shaped_decode(b, code, c.data() + 8 * k);
        double chosen = 0, best = INFINITY;
        for (int j = 0; j < 8; ++j) chosen += std::pow(y[8 * k + j] - c[8 * k + j], 2);
        for (uint64_t q = 0; q < npts; ++q) {
          double s = 0;
          for (int j = 0; j < 8; ++j) s += std::pow(y[8 * k + j] - pts[q * 8 + j], 2);
          best = std::min(best, s);
        }
        EXPECT_NEAR(chosen, best, 1e-4 * (1 + best)) << "group " << g << " row " << r << " sub-code " << k;
      }
      const at::Tensor ct = at::from_blob(c.data(), {d}, at::kFloat).to(at::kDouble);
      const at::Tensor expect = Gg.mv(ct) * scale[g];
      for (int i = 0; i < d; ++i)
        EXPECT_NEAR(W_hat[r * in + g * gs + i], expect[i].item<double>(), 1e-5) << "group " << g << " row " << r;
    }
  }
}

TEST(GlvqShaped, ShapingGainOnAGaussianLayer) {
  // With H = I (no feedback or incoherence) the layer loss is the code's MSE:
  // the shaped code must keep its shaping gain through the whole quantizer
  // (fp16 parameters, init, learning): at 2 bits the books give 0.088 vs the
  // box's 0.119 on N(0,1), so require at least 15% less error.
  at::manual_seed(kSeed + 5);
  const at::Tensor W = at::randn({512, 64});
  const at::Tensor H = at::eye(64);
  auto loss = [&](const char* code) {
    GlvqOptions o;
    o.bits = 2;
    o.cfg.code = code;
    o.cfg.group_size = 64;
    o.cfg.incoherence = false;
    o.cfg.error_feedback = false;
    o.cfg.bit_alloc = false;
    return layer_loss(W, glvq_dequantize(glvq_quantize_layer(W, H, "gauss", o)), H) / W.numel();
  };
  const double shaped = loss("shaped"), box = loss("box");
  EXPECT_LT(shaped, 0.85 * box) << "shaped " << shaped << " box " << box;
  EXPECT_GT(shaped, 0.0625);  // above the rate-distortion bound: the test measures what it claims
}

}  // namespace
}  // namespace glvq
