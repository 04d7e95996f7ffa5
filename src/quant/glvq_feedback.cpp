#include "quant/glvq_feedback.h"

#include "common/error.h"
#include "common/log.h"
#include "quant/glvq_group_ops.h"

namespace glvq {

at::Tensor glvq_inverse_cholesky(const at::Tensor& H_in, double damp, const std::string& name) {
  const at::Tensor H = H_in.to(at::kDouble);
  const double mean_diag = std::max(H.diagonal().mean().item<double>(), 1e-30);
  double dmp = damp;
  for (int attempt = 0;; ++attempt) {
    at::Tensor Hd = H.clone();
    Hd.diagonal().add_(dmp * mean_diag);
    auto [L, info] = at::linalg_cholesky_ex(Hd);
    if (info.item<int64_t>() == 0) {
      auto [U, info2] = at::linalg_cholesky_ex(at::cholesky_inverse(L), /*upper=*/true);
      if (info2.item<int64_t>() == 0) return U.to(at::kFloat);
    }
    GLVQ_CHECK(attempt < 4,
               "layer {}: H + {} * mean(diag H) * I is not positive definite; the calibration statistics are "
               "degenerate: collect more samples or turn quant.glvq.error_feedback off",
               name, dmp);
    log_warn("layer {}: GLVQ feedback Cholesky failed at damp = {}; retrying with {}", name, dmp, dmp * 10);
    dmp *= 10;
  }
}

at::Tensor glvq_feedback_matrix(const at::Tensor& U, int64_t block) {
  const int64_t in = U.size(0), P = in / block;
  GLVQ_ASSERT(in % block == 0);
  const at::Tensor Ud = U.to(at::kDouble);
  const at::Tensor inv = at::linalg_inv(glvq_diag_blocks(Ud, block));  // [P, b, b]
  return at::bmm(inv, Ud.reshape({P, block, in})).reshape({in, in}).to(U.scalar_type());
}

at::Tensor glvq_feedback_metrics(const at::Tensor& U, int64_t gs) {
  const at::Tensor Ug = glvq_diag_blocks(U.to(at::kDouble), gs);
  const at::Tensor Ui = at::linalg_inv(Ug);
  return at::bmm(Ui, Ui.transpose(1, 2)).to(U.scalar_type());
}

}  // namespace glvq
