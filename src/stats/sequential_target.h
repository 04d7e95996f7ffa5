#pragma once
/// Statistics of a linear whose input comes from a block whose earlier linears are
/// already quantized (x_q), beside the input the FP block gives it on the same tokens
/// (x): H = (1/n) sum x_q x_q^T and C = (1/n) sum x x_q^T. The weight that maps the
/// quantized-path inputs onto the FP outputs, argmin_W' sum ||W' x_q - W x||^2, is
/// W C H^-1; quantizing it under H then minimises the layer's true output error
/// sum ||W_hat x_q - W x||^2 (the least-squares residual is orthogonal to the x_q).
#include <ATen/ATen.h>

namespace glvq {

class CrossAccumulator {
 public:
  /// X_FP, X_Q: [tokens, in], the same tokens in the same order.
  void add(const at::Tensor& x_fp, const at::Tensor& x_q);
  int64_t tokens() const { return n_; }
  /// H = (1/n) sum x_q x_q^T and C = (1/n) sum x x_q^T, fp32 [in, in].
  at::Tensor H() const;
  at::Tensor C() const;

 private:
  at::Tensor hsum_, csum_;  ///< fp64 [in, in]
  int64_t n_ = 0;
};

/// W C (H + damp * mean(diag H) I)^-1 for W [out, in] (fp32, on W's device).
at::Tensor sequential_target(const at::Tensor& W, const at::Tensor& C, const at::Tensor& H, double damp);

}  // namespace glvq
