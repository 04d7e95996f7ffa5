#pragma once
/// How closely the quantized model's next-token distributions follow the
/// full-precision model's on the same tokens: KL(P_fp || P_q) per position
/// (its mean and 99th percentile) and top-1 agreement, the convention of
/// llama.cpp's `llama-perplexity --kl-divergence`.
#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace glvq {

class TokenAgreement {
 public:
  /// Adds the positions of LOGP_FP and LOGP_Q (log-probabilities [n, vocab], one
  /// row per predicted token, same device).
  void add(const at::Tensor& logp_fp, const at::Tensor& logp_q);

  int64_t count() const { return int64_t(kl_.size()); }
  double kl_mean() const;
  /// The 99th percentile of the per-position KL (nearest rank).
  double kl_p99() const;
  /// Fraction of positions whose most likely token is the same in both.
  double top1() const;

 private:
  std::vector<float> kl_;
  int64_t same_top1_ = 0;
};

}  // namespace glvq
