#include "quant/glvq_init.h"

#include <cmath>
#include <limits>
#include <vector>

#include "common/error.h"

namespace glvq {
namespace {

// Multipliers of the Gaussian step tried per group: the companded data is not
// Gaussian and the loss is H-weighted, so the best spacing differs by group.
const std::vector<double> kStepFactors = {0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.6, 1.8};

at::Tensor to_fp16_grid(const at::Tensor& x) { return x.to(at::kHalf).to(at::kFloat); }

}  // namespace

double glvq_gaussian_step(int bits) {
  // Max (1960), optimum uniform quantizer for N = 2^b levels, unit Gaussian.
  static const double kStep[8] = {1.5958, 0.9957, 0.5860, 0.3352, 0.1881, 0.1041, 0.0569, 0.0308};
  GLVQ_ASSERT(bits >= 1 && bits <= 8);
  return kStep[bits - 1];
}

namespace {

/// The factor of E[u u^T] over the d-vectors U [B, M, d] (double), as float.
at::Tensor chol_of_moment(const at::Tensor& U, int64_t dim, at::ScalarType st) {
  const int64_t B = U.size(0);
  at::Tensor S = at::bmm(U.transpose(1, 2), U) / static_cast<double>(U.size(1));
  // A little ridge keeps the factor regular for constant or rank-deficient groups.
  const at::Tensor ridge = S.diagonal(0, 1, 2).mean(1) * 1e-6 + 1e-20;
  S = S + at::eye(dim, S.options()).unsqueeze(0) * ridge.reshape({B, 1, 1});
  return at::linalg_cholesky(S).to(st);
}

GlvqInitStats stats_full(const at::Tensor& Wg, int64_t dim, bool companding) {
  const int64_t B = Wg.size(0);
  GlvqInitStats st;
  at::Tensor amax = Wg.abs().amax({1, 2});
  // fp16 holds the scale: keep it a normal fp16 number and below fp16's max.
  amax = at::where(amax > 0, amax, at::ones_like(amax)).clamp(6.103515625e-05, 65504.0);
  st.scale = to_fp16_grid(amax);
  if (companding) {
    const at::Tensor w2 = Wg.square();
    const at::Tensor m2 = w2.mean({1, 2}), m4 = w2.square().mean({1, 2});
    const at::Tensor kurt = at::where(m2 > 0, m4 / (m2.square() + 1e-30), at::full_like(m2, 3.0));
    st.mu = to_fp16_grid((at::tanh(kurt / 10.0) * 100.0).clamp(10.0, 255.0));
  } else {
    st.mu = at::zeros({B}, Wg.options());
  }
  const at::Tensor U = glvq_compand_t(Wg, st.scale, st.mu, companding).reshape({B, -1, dim}).to(at::kDouble);
  st.chol = chol_of_moment(U, dim, Wg.scalar_type());
  return st;
}

/// The same for one narrower group W1 [1, out, gs] whose columns COLS.. are padding:
/// the statistics of its real weights, over its real (or partly real) d-vectors.
GlvqInitStats stats_narrow(const at::Tensor& W1, int64_t dim, bool companding, int64_t cols) {
  const int64_t out = W1.size(1), width = (cols + dim - 1) / dim * dim;
  const at::Tensor Wv = W1.slice(2, 0, width);  // padding columns past the last vector dropped
  GlvqInitStats st;
  at::Tensor amax = Wv.abs().amax({1, 2});  // padding is 0: the real weights' max
  amax = at::where(amax > 0, amax, at::ones_like(amax)).clamp(6.103515625e-05, 65504.0);
  st.scale = to_fp16_grid(amax);
  if (companding) {
    const double n = static_cast<double>(out * cols);
    const at::Tensor w2 = Wv.square();
    const at::Tensor m2 = w2.sum({1, 2}) / n, m4 = w2.square().sum({1, 2}) / n;
    const at::Tensor kurt = at::where(m2 > 0, m4 / (m2.square() + 1e-30), at::full_like(m2, 3.0));
    st.mu = to_fp16_grid((at::tanh(kurt / 10.0) * 100.0).clamp(10.0, 255.0));
  } else {
    st.mu = at::zeros({1}, W1.options());
  }
  const at::Tensor U = glvq_compand_t(Wv, st.scale, st.mu, companding).reshape({1, -1, dim}).to(at::kDouble);
  st.chol = chol_of_moment(U, dim, W1.scalar_type());
  return st;
}

}  // namespace

GlvqInitStats glvq_init_stats(const at::Tensor& Wg, int64_t dim, bool companding, int64_t last_cols) {
  const int64_t B = Wg.size(0), gs = Wg.size(2);
  if (last_cols <= 0 || last_cols >= gs) return stats_full(Wg, dim, companding);
  const GlvqInitStats last = stats_narrow(Wg.slice(0, B - 1, B), dim, companding, last_cols);
  if (B == 1) return last;
  const GlvqInitStats full = stats_full(Wg.slice(0, 0, B - 1), dim, companding);
  return {at::cat({full.scale, last.scale}), at::cat({full.mu, last.mu}), at::cat({full.chol, last.chol})};
}

GlvqParams glvq_init_params(const at::Tensor& Wg, const GlvqInitStats& st, const at::Tensor& bits, const at::Tensor& A,
                            const at::Tensor& F, const std::string& rounding, bool companding, at::Tensor* loss) {
  const int64_t B = Wg.size(0);
  std::vector<double> steps(static_cast<size_t>(B));
  const at::Tensor bits_cpu = bits.to(at::kCPU).to(at::kLong).contiguous();
  for (int64_t g = 0; g < B; ++g) steps[g] = glvq_gaussian_step(static_cast<int>(bits_cpu.data_ptr<int64_t>()[g]));
  const at::Tensor step =
      at::from_blob(steps.data(), {B, 1, 1}, at::TensorOptions().dtype(at::kDouble)).to(Wg.device(), Wg.scalar_type());
  const at::Tensor G_unit = st.chol * step;

  GlvqParams best{G_unit.clone(), st.mu.clone(), st.scale.clone(), bits.to(Wg.device(), at::kLong)};
  at::Tensor best_loss = at::full({B}, std::numeric_limits<float>::infinity(), Wg.options());
  for (double a : kStepFactors) {
    GlvqParams p{G_unit * a, st.mu, st.scale, best.bits};
    const GlvqRounder r = glvq_make_rounder(p.G, p.bits, rounding);
    const GlvqGroupCodes c = glvq_quantize_groups(Wg, p, companding, r, F);
    const at::Tensor l = glvq_group_losses(Wg - c.W_hat, A);
    const at::Tensor better = l < best_loss;
    best.G = at::where(better.reshape({B, 1, 1}), p.G, best.G);
    best_loss = at::where(better, l, best_loss);
  }
  if (loss) *loss = best_loss;
  return best;
}

}  // namespace glvq
