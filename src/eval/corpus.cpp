#include "eval/corpus.h"
#include "common/splitmix.h"

#include "common/error.h"

#include <algorithm>

namespace glvq {
namespace {
}  // namespace

at::Tensor make_eval_chunks(const std::vector<int32_t>& ids, int ctx, int max_chunks, const std::string& origin) {
  int64_t n = static_cast<int64_t>(ids.size()) / ctx;
  GLVQ_CHECK(n >= 1, "{}: {} tokens are fewer than one chunk of eval.ctx = {} tokens; use a longer text or a "
             "smaller eval.ctx", origin, ids.size(), ctx);
  if (max_chunks > 0) n = std::min<int64_t>(n, max_chunks);
  at::Tensor all = at::from_blob(const_cast<int32_t*>(ids.data()), {n * ctx}, at::kInt);
  return all.to(at::kLong).view({n, ctx});
}

at::Tensor make_calib_samples(const std::vector<int32_t>& ids, int ctx, int samples, uint64_t seed,
                              const std::string& origin) {
  const int64_t n = static_cast<int64_t>(ids.size()) / ctx;
  GLVQ_CHECK(n >= samples, "{}: {} tokens give {} sequences of calib.ctx = {} tokens, fewer than calib.samples = "
             "{}; use a longer calibration text, fewer samples or a shorter ctx", origin, ids.size(), n, ctx,
             samples);
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  uint64_t state = seed;
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[splitmix64(state) % uint64_t(i + 1)]);
  at::Tensor out = at::empty({samples, ctx}, at::kLong);
  auto acc = out.accessor<int64_t, 2>();
  for (int s = 0; s < samples; ++s)
    for (int t = 0; t < ctx; ++t) acc[s][t] = ids[order[s] * ctx + t];
  return out;
}

}  // namespace glvq
