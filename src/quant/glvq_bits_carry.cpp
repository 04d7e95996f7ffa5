#include "quant/glvq_bits_carry.h"

#include <algorithm>
#include <cmath>

namespace glvq {

double BitsCarry::next(int64_t weights) const {
  const double lo = std::floor(target_), hi = std::ceil(target_);
  if (lo == hi) return target_;  // integer: the allocation already averages exactly N per layer
  const double t = (target_ * double(weights_ + weights) - used_) / double(weights);
  const double c = std::clamp(t, lo, hi);
  // An allocation's average is exact only up to rounding of group counts: a target within
  // 1e-9 of an integer is that integer (a fractional one would mix widths for nothing).
  return std::abs(c - std::round(c)) < 1e-9 ? std::round(c) : c;
}

void BitsCarry::spent(int64_t weights, double code_bits_per_weight) {
  used_ += code_bits_per_weight * double(weights);
  weights_ += weights;
}

}  // namespace glvq
