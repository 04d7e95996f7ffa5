#include "quant/glvq_feedback.h"

#include "common/error.h"
#include "quant/damped_cholesky.h"
#include "quant/glvq_group_ops.h"

namespace glvq {

at::Tensor glvq_inverse_cholesky(const at::Tensor& H, double damp, const std::string& name) {
  return damped_inverse_cholesky(H, damp, name,
                                 "collect more samples (calib.samples) or turn quant.glvq.error_feedback off");
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
