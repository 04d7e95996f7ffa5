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

at::Tensor glvq_pad_factor(const at::Tensor& U, int64_t in_pad) {
  const int64_t in = U.size(0);
  GLVQ_ASSERT(U.size(1) == in && in_pad >= in);
  if (in_pad == in) return U;
  at::Tensor Up = at::zeros({in_pad, in_pad}, U.options());
  Up.slice(0, 0, in).slice(1, 0, in).copy_(U);
  Up.slice(0, in, in_pad).slice(1, in, in_pad).copy_(at::eye(in_pad - in, U.options()));
  return Up;
}

}  // namespace glvq
