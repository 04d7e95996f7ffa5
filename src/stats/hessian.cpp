#include "stats/hessian.h"

#include "common/error.h"

namespace glvq {

void HessianAccumulator::add(const at::Tensor& x) {
  at::Tensor xf = x.to(at::kFloat);
  at::Tensor prod = at::matmul(xf.t(), xf).to(at::kDouble);
  if (!sum_.defined())
    sum_ = prod;
  else
    sum_.add_(prod);
  n_ += x.size(0);
}

at::Tensor HessianAccumulator::mean() const {
  GLVQ_CHECK(n_ > 0, "no calibration tokens reached this layer");
  return (sum_ / double(n_)).to(at::kFloat);
}

}  // namespace glvq
