// calibrate: calibration sequences flow through the full-precision pipeline;
// each rank keeps the activations entering its first block (also on disk,
// stats/inputs-block-<k>.h5, for --resume). The learn stage derives every
// block's statistics from them (docs/DISTRIBUTED.md).
#include "ckpt/checksum.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/preempt.h"
#include "eval/corpus.h"
#include "jobs/pipeline.h"
#include "jobs/provenance.h"
#include "jobs/stage.h"
#include "stats/stats_file.h"

#include <c10/core/GradMode.h>

namespace glvq {
namespace {

class CalibrateStage : public Stage {
 public:
  std::string name() const override { return "calibrate"; }
  void run(JobContext& ctx) override {
    if (ctx.cfg.quant.method == "none") {
      log_info("calibrate: quant.method is none, nothing to calibrate");
      return;
    }
    c10::NoGradGuard no_grad;
    const auto& c = ctx.cfg.calib;
    std::vector<int32_t> ids = broadcast_tokens(ctx, ctx.cfg.data.calib);
    at::Tensor samples = make_calib_samples(ids, c.ctx, c.samples, c.seed, ctx.cfg.data.calib);
    const RankShard& s = ctx.shard();
    ctx.inputs_provenance = inputs_provenance(ctx, s.first_block, checksum_bytes(samples.data_ptr(), samples.nbytes()));
    const std::string path = inputs_path(ctx.cfg.output_dir, s.first_block);
    ctx.rank_report["calib_tokens"] = samples.numel();

    // The pipeline needs every rank, so it is skipped only when all ranks have their inputs.
    std::optional<std::vector<at::Tensor>> saved;
    if (ctx.resume) saved = load_activations(path, ctx.inputs_provenance);
    if (ctx.comm->allreduce_sum(saved ? 0.0 : 1.0) == 0.0) {
      ctx.boundary_inputs = std::move(*saved);
      log_info("calibrate: reusing {} (--resume)", path);
      return;
    }
    std::vector<BlockWeights> blocks;
    // The last rank's blocks need no forward here: nothing downstream consumes it.
    if (!ctx.last_rank())
      for (int b = s.first_block; b < s.end_block; ++b) {
        throw_if_preempted("calibrate (loading blocks)");
        blocks.push_back(load_block(*ctx.files, ctx.model, b, ctx.device));
      }
    ctx.boundary_inputs.clear();
    run_pipeline(ctx, samples, c.micro_batch, "calibrate",
                 [&](int64_t, const at::Tensor& x) {
                   ctx.boundary_inputs.push_back(x.to(at::kCPU, ctx.activation_dtype()));
                   at::Tensor y = x;
                   for (auto& bw : blocks) {
                     throw_if_preempted("calibrate (a micro-batch's blocks)");
                     y = block_forward(bw, ctx.model, ctx.rope, y);
                   }
                   return y;
                 },
                 nullptr);
    ensure_dir(ctx.cfg.output_dir + "/stats");
    save_activations(path, ctx.boundary_inputs, ctx.inputs_provenance);
    log_info("calibrate: {} sequences of {} tokens captured at block {}", samples.size(0), samples.size(1),
             s.first_block);
  }
};

}  // namespace

std::unique_ptr<Stage> make_calibrate_stage() { return std::make_unique<CalibrateStage>(); }

}  // namespace glvq
