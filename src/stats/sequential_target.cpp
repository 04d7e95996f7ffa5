#include "stats/sequential_target.h"

#include "common/error.h"

namespace glvq {

void CrossAccumulator::add(const at::Tensor& x_fp, const at::Tensor& x_q) {
  GLVQ_ASSERT(x_fp.sizes() == x_q.sizes() && x_q.dim() == 2);
  const at::Tensor q = x_q.to(at::kFloat), f = x_fp.to(at::kFloat);
  // fp32 products per micro-batch, fp64 sums (as HessianAccumulator)
  const at::Tensor h = at::matmul(q.t(), q).to(at::kDouble), c = at::matmul(f.t(), q).to(at::kDouble);
  if (!hsum_.defined()) {
    hsum_ = h;
    csum_ = c;
  } else {
    hsum_.add_(h);
    csum_.add_(c);
  }
  n_ += x_q.size(0);
}

at::Tensor CrossAccumulator::H() const {
  GLVQ_CHECK(n_ > 0, "no calibration tokens reached this layer");
  return (hsum_ / double(n_)).to(at::kFloat);
}

at::Tensor CrossAccumulator::C() const {
  GLVQ_CHECK(n_ > 0, "no calibration tokens reached this layer");
  return (csum_ / double(n_)).to(at::kFloat);
}

at::Tensor sequential_target(const at::Tensor& W, const at::Tensor& C, const at::Tensor& H, double damp) {
  const int64_t n = H.size(0);
  GLVQ_ASSERT(H.dim() == 2 && H.size(1) == n && C.sizes() == H.sizes() && W.dim() == 2 && W.size(1) == n);
  // in double: H of a real layer spans many orders of magnitude
  at::Tensor Hd = H.to(W.device(), at::kDouble);
  const double lambda = damp * Hd.diagonal().mean().item<double>();
  Hd = Hd + lambda * at::eye(n, Hd.options());
  // W' H = W C  <=>  H W'^T = C^T W^T  (H symmetric)
  const at::Tensor L = at::linalg_cholesky(Hd);
  const at::Tensor rhs = at::matmul(C.to(W.device(), at::kDouble).t(), W.to(at::kDouble).t());
  return at::cholesky_solve(rhs, L).t().to(at::kFloat).contiguous();
}

}  // namespace glvq
