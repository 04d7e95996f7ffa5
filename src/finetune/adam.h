#pragma once
/// Adam (bias-corrected, no weight decay) on one autograd leaf, its moments kept
/// beside it: block and end-to-end fine-tuning share it.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>

namespace glvq {

struct AdamState {
  static constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;
  at::Tensor m, v;
  /// One step on X from X.grad() (nothing when it has none), T = 1, 2, ...
  void step(at::Tensor& x, double lr, int64_t t) {
    const at::Tensor g = x.grad();
    if (!g.defined()) return;
    if (!m.defined()) {
      m = at::zeros_like(g);
      v = at::zeros_like(g);
    }
    m.mul_(kBeta1).add_(g, 1 - kBeta1);
    v.mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
    const double c1 = 1 - std::pow(kBeta1, double(t)), c2 = 1 - std::pow(kBeta2, double(t));
    x.sub_(lr * (m / c1) / ((v / c2).sqrt() + kEps));
  }
};

}  // namespace glvq
