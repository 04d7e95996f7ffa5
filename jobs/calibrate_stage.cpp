// calibrate: calibration sequences flow through the full-precision pipeline;
// each rank keeps the activations entering its first block. The learn stage
// derives every block's statistics from them (see docs/DISTRIBUTED.md).
#include "common/error.h"
#include "common/log.h"
#include "eval/corpus.h"
#include "jobs/pipeline.h"
#include "jobs/stage.h"

#include <c10/core/GradMode.h>

namespace glvq {
namespace {

class CalibrateStage : public Stage {
 public:
  std::string name() const override { return "calibrate"; }
  void run(JobContext& ctx) override {
    c10::NoGradGuard no_grad;
    const auto& c = ctx.cfg.calib;
    GLVQ_USAGE_CHECK(!ctx.cfg.data.calib.empty(), "data.calib is not set: the calibrate stage needs a text");
    std::vector<int32_t> ids = broadcast_tokens(ctx, ctx.cfg.data.calib);
    at::Tensor samples = make_calib_samples(ids, c.ctx, c.samples, c.seed, ctx.cfg.data.calib);
    const RankShard& s = ctx.shard();
    std::vector<BlockWeights> blocks;
    // The last rank's blocks need no forward here: nothing downstream consumes it.
    if (!ctx.last_rank())
      for (int b = s.first_block; b < s.end_block; ++b) blocks.push_back(load_block(*ctx.files, ctx.model, b, ctx.device));
    ctx.boundary_inputs.clear();
    run_pipeline(ctx, samples, c.micro_batch, "calibrate",
                 [&](int64_t, const at::Tensor& x) {
                   ctx.boundary_inputs.push_back(x.to(at::kCPU));
                   at::Tensor y = x;
                   for (auto& bw : blocks) y = block_forward(bw, ctx.model, ctx.rope, y);
                   return y;
                 },
                 nullptr);
    ctx.rank_report["calib_tokens"] = samples.numel();
    log_info("calibrate: {} sequences of {} tokens captured at block {}", samples.size(0), samples.size(1),
             s.first_block);
  }
};

}  // namespace

std::unique_ptr<Stage> make_calibrate_stage() { return std::make_unique<CalibrateStage>(); }

}  // namespace glvq
