#pragma once
/// Token sequences for evaluation and calibration, cut the way reference.json says.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace glvq {

/// Non-overlapping chunks of CTX tokens ([n, ctx] int64), the tail dropped;
/// at most MAX_CHUNKS (0 = all). ORIGIN names the text in errors.
at::Tensor make_eval_chunks(const std::vector<int32_t>& ids, int ctx, int max_chunks, const std::string& origin);

/// SAMPLES sequences of CTX tokens: the text is cut into non-overlapping chunks
/// and SAMPLES of them are picked by a permutation seeded with SEED (portable:
/// the same on every platform and rank count).
at::Tensor make_calib_samples(const std::vector<int32_t>& ids, int ctx, int samples, uint64_t seed,
                              const std::string& origin);

}  // namespace glvq
