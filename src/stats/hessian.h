#pragma once
/// Input second moments H = (1/n) sum x x^T of a linear layer, accumulated
/// over calibration tokens: fp32 products per micro-batch, summed in fp64 so
/// that millions of tokens do not lose the small contributions.
#include <ATen/ATen.h>

namespace glvq {

class HessianAccumulator {
 public:
  /// X: [tokens, in] on any device.
  void add(const at::Tensor& x);
  int64_t tokens() const { return n_; }
  /// H / n as fp32 [in, in] on the accumulator's device.
  at::Tensor mean() const;

 private:
  at::Tensor sum_;  ///< fp64 [in, in]
  int64_t n_ = 0;
};

}  // namespace glvq
