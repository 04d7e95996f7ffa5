// validate: pipelined perplexity over the evaluation text, with the
// full-precision weights and, when a quantizer ran, the quantized ones.
#include "ckpt/checkpoint.h"
#include "common/error.h"
#include "common/log.h"
#include "eval/corpus.h"
#include "jobs/pipeline.h"
#include "jobs/stage.h"

#include <c10/core/GradMode.h>

#include <cmath>

namespace glvq {
namespace {

class ValidateStage : public Stage {
 public:
  std::string name() const override { return "validate"; }
  void run(JobContext& ctx) override {
    c10::NoGradGuard no_grad;
    const auto& e = ctx.cfg.eval;
    std::vector<int32_t> ids = broadcast_tokens(ctx, ctx.cfg.data.eval);
    at::Tensor chunks = make_eval_chunks(ids, e.ctx, e.max_chunks, ctx.cfg.data.eval);
    double ppl_fp = evaluate(ctx, chunks, false);
    if (ctx.first_rank()) {
      ctx.report["ppl_fp"] = ppl_fp;
      ctx.report["eval_ctx"] = e.ctx;
      ctx.report["eval_chunks"] = chunks.size(0);
      ctx.report["eval_tokens"] = ids.size();
      ctx.report["ppl_quant"] = nullptr;
    }
    if (ctx.cfg.quant.method != "none") {
      double ppl_q = evaluate(ctx, chunks, true);
      if (ctx.first_rank()) ctx.report["ppl_quant"] = ppl_q;
    }
  }

 private:
  double evaluate(JobContext& ctx, const at::Tensor& chunks, bool quantized) {
    const RankShard& s = ctx.shard();
    // The quantized weights come from the checkpoint, so the perplexity is that of what was stored.
    std::unique_ptr<CheckpointReader> ckpt;
    if (quantized) ckpt = std::make_unique<CheckpointReader>(ctx.cfg.output_dir + "/model.glvq.h5");
    std::vector<BlockWeights> blocks;
    for (int b = s.first_block; b < s.end_block; ++b) {
      BlockWeights w = load_block(*ctx.files, ctx.model, b, ctx.device, /*linears=*/!quantized);
      if (quantized)
        for (int l = 0; l < kNumLinears; ++l) {
          const std::string name = linear_tensor_name(b, static_cast<Linear>(l));
          GLVQ_CHECK(ckpt->has_layer(name), "{} has no layer {}; run the learn and gather stages first",
                     ckpt->path(), name);
          w.w[l] = dequantize_on(ckpt->layer(name), ctx.device);
          const auto want = linear_weight_shape(ctx.model, static_cast<Linear>(l));
          GLVQ_CHECK(w.w[l].sizes() == at::IntArrayRef(want), "{}: layer {} is {} but the model needs {}: the "
                     "checkpoint belongs to another model", ckpt->path(), name, shape_str(w.w[l]),
                     fmt::format("[{}, {}]", want[0], want[1]));
        }
      blocks.push_back(std::move(w));
    }
    HeadWeights head;
    if (ctx.last_rank()) head = load_head(*ctx.files, ctx.model, false, true, ctx.device);
    double nll = 0;
    run_pipeline(ctx, chunks, ctx.cfg.eval.micro_batch, quantized ? "validate (quantized)" : "validate (fp)",
                 [&](int64_t, const at::Tensor& x) {
                   at::Tensor y = x;
                   for (auto& bw : blocks) y = block_forward(bw, ctx.model, ctx.rope, y);
                   return y;
                 },
                 [&](int64_t, const at::Tensor& y, const at::Tensor& tok) { nll += nll_sum(head, ctx.model, y, tok); });
    const double total = ctx.comm->allreduce_sum(nll);
    const double count = double(chunks.size(0)) * double(chunks.size(1) - 1);
    const double ppl = std::exp(total / count);
    log_info("validate: {} perplexity {:.4f} over {} chunks of {} tokens", quantized ? "quantized" : "fp", ppl,
             chunks.size(0), chunks.size(1));
    return ppl;
  }
};

}  // namespace

std::unique_ptr<Stage> make_validate_stage() { return std::make_unique<ValidateStage>(); }

}  // namespace glvq
