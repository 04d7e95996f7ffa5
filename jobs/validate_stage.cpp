// validate: pipelined perplexity over the evaluation text, with the
// full-precision weights and, when a quantizer ran, the quantized ones, and
// how far the quantized model's next-token distributions are from the FP
// model's (KL, top-1 agreement).
#include "ckpt/checkpoint.h"
#include "common/error.h"
#include "common/log.h"
#include "common/preempt.h"
#include "eval/corpus.h"
#include "eval/token_agreement.h"
#include "jobs/pipeline.h"
#include "jobs/stage.h"

#include <c10/core/GradMode.h>

#include <cmath>
#include <map>

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
    const bool quantizing = ctx.cfg.quant.method != "none";
    double ppl_fp = evaluate(ctx, chunks, false, quantizing);
    if (ctx.first_rank()) {
      ctx.report["ppl_fp"] = ppl_fp;
      ctx.report["eval_ctx"] = e.ctx;
      ctx.report["eval_chunks"] = chunks.size(0);
      ctx.report["eval_tokens"] = ids.size();
      ctx.report["ppl_quant"] = nullptr;
    }
    if (quantizing) {
      double ppl_q = evaluate(ctx, chunks, true, false);
      // The last rank measured the agreement; the report is the first rank's.
      const bool have = ctx.last_rank() && agreement_.count() > 0;
      const double kl_mean = ctx.comm->allreduce_sum(have ? agreement_.kl_mean() : 0.0);
      const double kl_p99 = ctx.comm->allreduce_sum(have ? agreement_.kl_p99() : 0.0);
      const double top1 = ctx.comm->allreduce_sum(have ? agreement_.top1() : 0.0);
      if (ctx.first_rank()) {
        ctx.report["ppl_quant"] = ppl_q;
        ctx.report["quality"] = {{"kl_mean", kl_mean}, {"kl_p99", kl_p99}, {"top1", top1}};
      }
      log_info("validate: KL(fp || quantized) mean {:.5f}, 99th percentile {:.5f}; top-1 agreement {:.4f}",
               kl_mean, kl_p99, top1);
    }
  }

 private:
  // KEEP_FP: the last rank keeps the FP model's final hidden states, which the
  // quantized pass compares its own with (hidden is smaller than vocab).
  double evaluate(JobContext& ctx, const at::Tensor& chunks, bool quantized, bool keep_fp) {
    const RankShard& s = ctx.shard();
    // The quantized weights come from the checkpoint, so the perplexity is that of what was stored.
    std::unique_ptr<CheckpointReader> ckpt;
    if (quantized) ckpt = std::make_unique<CheckpointReader>(ctx.cfg.output_dir + "/model.glvq.h5");
    std::vector<BlockWeights> blocks;
    for (int b = s.first_block; b < s.end_block; ++b) {
      throw_if_preempted("validate (loading blocks)");
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
    // Above this the FP states are kept in fp16: its rounding moves a per-token KL by ~1e-5.
    constexpr double kKeepFp32Bytes = 4.0 * (1 << 30);
    const at::ScalarType keep_type =
        double(chunks.numel()) * double(ctx.model.hidden) * 4 <= kKeepFp32Bytes ? at::kFloat : at::kHalf;
    run_pipeline(ctx, chunks, ctx.cfg.eval.micro_batch, quantized ? "validate (quantized)" : "validate (fp)",
                 [&](int64_t, const at::Tensor& x) {
                   at::Tensor y = x;
                   for (auto& bw : blocks) {
                     throw_if_preempted("validate (a micro-batch's blocks)");
                     y = block_forward(bw, ctx.model, ctx.rope, y);
                   }
                   return y;
                 },
                 [&](int64_t m, const at::Tensor& y, const at::Tensor& tok) {
                   if (keep_fp) fp_states_[m] = y.to(at::kCPU, keep_type);
                   if (!quantized || !fp_states_.count(m)) {
                     nll += nll_sum(head, ctx.model, y, tok);
                     return;
                   }
                   const at::Tensor fp = fp_states_.at(m).to(y.device(), y.scalar_type());
                   for (int64_t b = 0; b < y.size(0); ++b) {
                     throw_if_preempted("validate (the quantized model's token distributions)");
                     const at::Tensor logp_q = next_token_log_probs(head, ctx.model, y[b]);
                     nll += nll_of(logp_q, tok[b]);
                     agreement_.add(next_token_log_probs(head, ctx.model, fp[b]), logp_q);
                   }
                   fp_states_.erase(m);
                 });
    const double total = ctx.comm->allreduce_sum(nll);
    const double count = double(chunks.size(0)) * double(chunks.size(1) - 1);
    const double ppl = std::exp(total / count);
    log_info("validate: {} perplexity {:.4f} over {} chunks of {} tokens", quantized ? "quantized" : "fp", ppl,
             chunks.size(0), chunks.size(1));
    return ppl;
  }

  std::map<int64_t, at::Tensor> fp_states_;  ///< micro-batch -> FP final hidden states (last rank)
  TokenAgreement agreement_;
};

}  // namespace

std::unique_ptr<Stage> make_validate_stage() { return std::make_unique<ValidateStage>(); }

}  // namespace glvq
