#pragma once
/// Micro-batches flowing through the ranks: the first rank embeds tokens,
/// every rank transforms what it receives and sends it on; once the pipeline
/// fills, all ranks work at once.
#include "jobs/job_context.h"

#include <functional>

namespace glvq {

/// Splits TOKENS [n, T] into micro-batches of MB sequences. On each rank,
/// STEP(m, x) gets micro-batch m's activations entering the rank's first block
/// ([mb, T, hidden] on ctx.device) and returns what leaves its last block; the
/// last rank's LAST(m, y, tokens_m) consumes that. STAGE names the progress line.
void run_pipeline(JobContext& ctx, const at::Tensor& tokens, int mb, const std::string& stage,
                  const std::function<at::Tensor(int64_t, const at::Tensor&)>& step,
                  const std::function<void(int64_t, const at::Tensor&, const at::Tensor&)>& last);

/// Rank 0 reads and tokenizes PATH (eval protocol), or takes the ids check_texts
/// kept; every rank gets the ids.
std::vector<int32_t> broadcast_tokens(JobContext& ctx, const std::string& path);

/// Rank 0, before any work: data.eval (and data.calib when quantizing) exist, are not
/// empty and hold enough tokens for eval.ctx and calib.samples x calib.ctx, so that a
/// bad text fails the job in seconds instead of after the learning. Keeps the ids.
void check_texts(JobContext& ctx);

/// Embeds tokens [b, T] with the first rank's embedding.
at::Tensor embed_tokens(JobContext& ctx, const HeadWeights& head, const at::Tensor& tokens);

}  // namespace glvq
