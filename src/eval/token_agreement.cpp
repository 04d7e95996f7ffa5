#include "eval/token_agreement.h"

#include "common/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace glvq {

void TokenAgreement::add(const at::Tensor& logp_fp, const at::Tensor& logp_q) {
  GLVQ_CHECK(logp_fp.dim() == 2 && logp_fp.sizes() == logp_q.sizes(),
             "token agreement: log-probabilities of different shapes");
  // In fp32 even when the logits were not: a per-token KL of 1e-4 is below bf16's resolution.
  const at::Tensor a = logp_fp.to(at::kFloat), b = logp_q.to(at::kFloat);
  // exp(-inf) * (-inf - x) is NaN; a token the FP model gives no mass contributes nothing.
  const at::Tensor p = a.exp();
  const at::Tensor terms = at::where(p > 0, p * (a - b), at::zeros_like(p));
  const at::Tensor kl = terms.sum(-1).clamp_min(0).to(at::kCPU).contiguous();
  const float* k = kl.data_ptr<float>();
  kl_.insert(kl_.end(), k, k + kl.size(0));
  same_top1_ += a.argmax(-1).eq(b.argmax(-1)).sum().item<int64_t>();
}

double TokenAgreement::kl_mean() const {
  if (kl_.empty()) return 0;
  return std::accumulate(kl_.begin(), kl_.end(), 0.0) / double(kl_.size());
}

double TokenAgreement::kl_p99() const {
  if (kl_.empty()) return 0;
  std::vector<float> v = kl_;
  const size_t rank = size_t(std::ceil(0.99 * double(v.size()))) - 1;
  std::nth_element(v.begin(), v.begin() + rank, v.end());
  return v[rank];
}

double TokenAgreement::top1() const { return kl_.empty() ? 0 : double(same_top1_) / double(kl_.size()); }

}  // namespace glvq
