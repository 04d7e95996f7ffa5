#pragma once
/// The damped inverse Cholesky factor that GPTQ (gptq.cpp) and GLVQ's error
/// feedback (glvq_feedback.cpp) share, with one retry rule.
///
/// Returns U, upper triangular, with U^T U = (H + damp * mean(diag H) * I)^-1,
/// computed in double and returned float on H's device. When a factorization
/// fails (H + damp ... I not positive definite in double), it is retried with
/// more damping: a damping of 0 becomes 1e-4, a positive one grows x10, each
/// retry logged as a warning; after kDampedCholeskyRetries retries the error
/// names layer NAME, the dampings tried and REMEDY (what the user can do).
#include <ATen/ATen.h>

#include <string>

namespace glvq {

constexpr int kDampedCholeskyRetries = 4;
constexpr double kDampedCholeskyFirstDamp = 1e-4;  ///< the first retry of damp = 0

at::Tensor damped_inverse_cholesky(const at::Tensor& H, double damp, const std::string& name,
                                   const std::string& remedy);

}  // namespace glvq
