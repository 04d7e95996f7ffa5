#include "quant/damped_cholesky.h"

#include <algorithm>

#include "common/error.h"
#include "common/log.h"

namespace glvq {

at::Tensor damped_inverse_cholesky(const at::Tensor& H_in, double damp, const std::string& name,
                                   const std::string& remedy) {
  const at::Tensor H = H_in.to(at::kDouble);
  // A mean diagonal of 0 (no input ever fired) would make every damping 0.
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
    GLVQ_CHECK(attempt < kDampedCholeskyRetries,
               "layer {}: H + damp * mean(diag H) * I is not positive definite even at damp = {} (started at {}, "
               "{} retries); the calibration statistics are degenerate: {}",
               name, dmp, damp, kDampedCholeskyRetries, remedy);
    const double next = dmp > 0 ? dmp * 10 : kDampedCholeskyFirstDamp;
    log_warn("layer {}: Cholesky of H + damp * mean(diag H) * I failed at damp = {}; retrying with damp = {}", name,
             dmp, next);
    dmp = next;
  }
}

}  // namespace glvq
