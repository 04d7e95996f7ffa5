#pragma once
/// Fractional bit targets carried across a block's layers. A layer can only hold the
/// widths its groups allow: with few groups per layer (group_size 0: one group per row
/// block, B small) 2.5 bits rounds to 3 in every layer. The carry asks each layer for the
/// target that brings the block's code bits so far back to N on average, kept within
/// [floor N, ceil N] so that no layer's average leaves that range (unclamped, a 3-bit
/// q_proj would leave a 1-bit k_proj behind it). Per block, so the result does not depend
/// on how blocks are sharded over ranks.
#include <cstdint>

namespace glvq {

class BitsCarry {
 public:
  explicit BitsCarry(double target) : target_(target) {}
  /// The target average for the next layer of WEIGHTS weights (an integer N stays N exactly).
  double next(int64_t weights) const;
  /// Records what that layer stored: CODE_BITS_PER_WEIGHT over WEIGHTS weights.
  void spent(int64_t weights, double code_bits_per_weight);
  /// The block's average code bits per weight so far (the target before any layer).
  double average() const { return weights_ > 0 ? used_ / double(weights_) : target_; }

 private:
  double target_;
  double used_ = 0;      ///< code bits stored so far
  int64_t weights_ = 0;  ///< weights so far
};

}  // namespace glvq
