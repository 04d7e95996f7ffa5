#include "quant/glvq_group_ops.h"

#include <vector>

#include "common/error.h"
#include "common/preempt.h"

namespace glvq {
namespace {

/// V [B] viewed so that it broadcasts against a [B, ...] tensor of rank DIM.
at::Tensor per_group(const at::Tensor& v, int64_t dim) {
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[0] = v.size(0);
  return v.reshape(shape);
}

}  // namespace

GlvqParams GlvqParams::slice(int64_t begin, int64_t end) const {
  return {G.slice(0, begin, end), mu.slice(0, begin, end), scale.slice(0, begin, end), bits.slice(0, begin, end)};
}

GlvqParams GlvqParams::clone() const { return {G.clone(), mu.clone(), scale.clone(), bits.clone()}; }

at::Tensor glvq_group_view(const at::Tensor& W, int64_t gs) {
  const int64_t out = W.size(0), in = W.size(1);
  GLVQ_ASSERT(gs > 0 && in % gs == 0);
  return W.reshape({out, in / gs, gs}).permute({1, 0, 2}).contiguous();
}

at::Tensor glvq_group_unview(const at::Tensor& Wg) {
  const int64_t B = Wg.size(0), out = Wg.size(1), gs = Wg.size(2);
  return Wg.permute({1, 0, 2}).reshape({out, B * gs}).contiguous();
}

at::Tensor glvq_compand_t(const at::Tensor& X, const at::Tensor& scale, const at::Tensor& mu, bool companding) {
  const at::Tensor s = per_group(scale, X.dim());
  if (!companding) return X / s;
  const at::Tensor m = per_group(mu, X.dim());
  return at::sign(X) * at::log1p(m * X.abs() / s) / at::log1p(m);
}

at::Tensor glvq_expand_t(const at::Tensor& U, const at::Tensor& scale, const at::Tensor& mu, bool companding) {
  const at::Tensor s = per_group(scale, U.dim());
  if (!companding) return U * s;
  const at::Tensor m = per_group(mu, U.dim());
  return at::sign(U) * s * at::expm1(U.abs() * at::log1p(m)) / m;
}

GlvqRounder glvq_make_rounder(const at::Tensor& G, const at::Tensor& bits, const std::string& rounding) {
  GlvqRounder r;
  GLVQ_CHECK(rounding == "babai" || rounding == "nearest_plane",
             "quant.glvq.rounding = \"{}\" is not a rounding mode (known: babai, nearest_plane)", rounding);
  r.nearest_plane = rounding == "nearest_plane";
  const at::Tensor half = at::pow(2.0, (bits - 1).to(G.scalar_type())).reshape({-1, 1, 1});
  r.lo = -half;
  r.hi = half - 1;
  // Inverse and QR in double: G may be ill-conditioned after learning.
  const at::Tensor Gd = G.to(at::kDouble);
  if (r.nearest_plane) {
    auto qr = at::linalg_qr(Gd);
    r.Q = std::get<0>(qr).to(G.scalar_type());
    r.R = std::get<1>(qr).to(G.scalar_type());
  } else {
    r.Ginv = at::linalg_inv(Gd).to(G.scalar_type());
  }
  return r;
}

at::Tensor glvq_round(const at::Tensor& U, const GlvqRounder& r) {
  if (!r.nearest_plane) {
    const at::Tensor y = at::matmul(U, r.Ginv.transpose(1, 2));
    return at::maximum(at::minimum(at::floor(y), r.hi), r.lo);
  }
  // ||u - G t|| = ||Q^T u - R t||: choose t_i = z_i + 1/2 from the last
  // coordinate up, each against the residual of the ones already chosen.
  const int64_t d = U.size(2);
  const at::Tensor v = at::matmul(U, r.Q);  // rows are (Q^T u)^T
  at::Tensor t = at::zeros_like(U);
  for (int64_t i = d - 1; i >= 0; --i) {
    at::Tensor c = v.select(2, i);
    if (i + 1 < d) {
      const at::Tensor Ri = r.R.select(1, i).slice(1, i + 1, d).unsqueeze(1);  // [B, 1, d-i-1]
      c = c - (t.slice(2, i + 1, d) * Ri).sum(2);
    }
    c = c / r.R.select(1, i).select(1, i).unsqueeze(1);
    const at::Tensor z = at::maximum(at::minimum(at::floor(c), r.hi.squeeze(2)), r.lo.squeeze(2));
    t.select(2, i).copy_(z + 0.5);
  }
  return t - 0.5;
}

at::Tensor glvq_lattice_point(const at::Tensor& Z, const at::Tensor& G) {
  return at::matmul(Z + 0.5, G.transpose(1, 2));
}

GlvqGroupCodes glvq_quantize_groups(const at::Tensor& Wg, const GlvqParams& p, bool companding, const GlvqRounder& r,
                                    const at::Tensor& F) {
  const int64_t B = Wg.size(0), out = Wg.size(1), gs = Wg.size(2), d = p.G.size(1);
  const int64_t nv = gs / d;
  if (!F.defined()) {
    const at::Tensor U = glvq_compand_t(Wg, p.scale, p.mu, companding).reshape({B, out * nv, d});
    at::Tensor Z = glvq_round(U, r);
    at::Tensor W_hat = glvq_expand_t(glvq_lattice_point(Z, p.G), p.scale, p.mu, companding).reshape({B, out, gs});
    return {Z, W_hat, Wg - W_hat};
  }
  at::Tensor T = Wg.clone();
  at::Tensor Z = at::empty({B, out, nv, d}, Wg.options());
  at::Tensor W_hat = at::empty_like(Wg);
  at::Tensor E = at::empty_like(Wg);
  for (int64_t v = 0; v < nv; ++v) {
    throw_if_preempted("the GLVQ rounding with feedback");
    const int64_t c0 = v * d, c1 = c0 + d;
    const at::Tensor Tv = T.slice(2, c0, c1);
    const at::Tensor z = glvq_round(glvq_compand_t(Tv, p.scale, p.mu, companding), r);
    const at::Tensor w = glvq_expand_t(glvq_lattice_point(z, p.G), p.scale, p.mu, companding);
    Z.select(2, v).copy_(z);
    W_hat.slice(2, c0, c1).copy_(w);
    const at::Tensor e = Tv - w;
    E.slice(2, c0, c1).copy_(e);
    if (c1 < gs) T.slice(2, c1, gs).sub_(at::bmm(e, F.slice(1, c0, c1).slice(2, c1, gs)));
  }
  return {Z.reshape({B, out * nv, d}), W_hat, E};
}

at::Tensor glvq_group_losses(const at::Tensor& E, const at::Tensor& A) { return (at::bmm(E, A) * E).sum({1, 2}); }

at::Tensor glvq_diag_blocks(const at::Tensor& H, int64_t gs) {
  const int64_t B = H.size(0) / gs;
  // H viewed [B, gs, B, gs]: the diagonal over the two block indices.
  return H.reshape({B, gs, B, gs}).diagonal(0, 0, 2).permute({2, 0, 1}).contiguous();
}

}  // namespace glvq
