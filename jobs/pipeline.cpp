#include "jobs/pipeline.h"

#include "common/error.h"
#include "common/log.h"
#include "eval/corpus.h"
#include "jobs/interrupts.h"
#include "nn/gpu_memory.h"
#include "text/tokenizer.h"

namespace glvq {

std::vector<int32_t> broadcast_tokens(JobContext& ctx, const std::string& path) {
  std::vector<int32_t> ids;
  std::string err;
  if (ctx.first_rank()) {
    try {
      auto kept = ctx.tokens.find(path);
      if (kept != ctx.tokens.end()) {
        ids = std::move(kept->second);
        ctx.tokens.erase(kept);
      } else {
        Tokenizer tok(ctx.cfg.model.path + "/tokenizer.model");
        ids = tokenize_corpus(tok, read_text_file(path));
      }
    } catch (const Error& e) {
      err = e.what();
    }
  }
  // Every rank learns of rank 0's failure, so all exit with its message instead of waiting.
  ctx.comm->bcast_string(err);
  GLVQ_CHECK(err.empty(), "{}", err);
  ctx.comm->bcast_ints(ids);
  for (int32_t id : ids)
    GLVQ_CHECK(id >= 0 && id < ctx.model.vocab, "{}: token id {} is outside the model's vocabulary ({}): the "
               "tokenizer does not belong to this model", path, id, ctx.model.vocab);
  return ids;
}

void check_texts(JobContext& ctx) {
  const Config& c = ctx.cfg;
  Tokenizer tok(c.model.path + "/tokenizer.model");
  const auto& eval = ctx.tokens[c.data.eval] = tokenize_corpus(tok, read_text_file(c.data.eval));
  make_eval_chunks(eval, c.eval.ctx, 1, c.data.eval);
  if (c.quant.method == "none" || ctx.tokens.count(c.data.calib)) return;
  const auto& calib = ctx.tokens[c.data.calib] = tokenize_corpus(tok, read_text_file(c.data.calib));
  make_calib_samples(calib, c.calib.ctx, c.calib.samples, c.calib.seed, c.data.calib);
}

at::Tensor embed_tokens(JobContext& ctx, const HeadWeights& head, const at::Tensor& tokens) {
  return at::embedding(head.embed, tokens.to(ctx.device));
}

void run_pipeline(JobContext& ctx, const at::Tensor& tokens, int mb, const std::string& stage,
                  const std::function<at::Tensor(int64_t, const at::Tensor&)>& step,
                  const std::function<void(int64_t, const at::Tensor&, const at::Tensor&)>& last) {
  const int64_t n = tokens.size(0), n_mb = (n + mb - 1) / mb;
  const int rank = ctx.comm->rank(), world = ctx.comm->size();
  HeadWeights head;
  if (ctx.first_rank()) head = load_head(*ctx.files, ctx.model, true, false, ctx.device);
  Progress progress(stage, n_mb);
  for (int64_t m = 0; m < n_mb; ++m) {
    at::Tensor tok = tokens.narrow(0, m * mb, std::min<int64_t>(mb, n - m * mb));
    at::Tensor x = rank == 0 ? embed_tokens(ctx, head, tok)
                             : ctx.comm->recv_tensor(rank - 1, static_cast<int>(m), ctx.device);
    at::Tensor y = step(m, x);
    if (rank + 1 < world)
      ctx.comm->send_tensor(y, rank + 1, static_cast<int>(m));
    else if (last)
      last(m, y, tok);
    if (ctx.device.is_cuda()) gpu_memory_sample();
    progress.step();
    stage_boundary(stage.substr(0, stage.find(' ')), rank, static_cast<int>(m + 1));
  }
  progress.done();
}

}  // namespace glvq
