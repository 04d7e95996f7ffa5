// learn: block by block, the rank derives each linear's input statistics from
// the activations entering the block, quantizes the block's seven linears, and
// passes the activations on through the quantized (or full-precision) block.
#include "common/error.h"
#include "common/log.h"
#include "jobs/stage.h"
#include "stats/hessian.h"

#include <c10/core/GradMode.h>

#include <chrono>

namespace glvq {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class LearnStage : public Stage {
 public:
  std::string name() const override { return "learn"; }
  void run(JobContext& ctx) override {
    const Config& cfg = ctx.cfg;
    if (cfg.quant.method == "none") {
      log_info("learn: quant.method is none, nothing to learn");
      return;
    }
    GLVQ_CHECK(!ctx.boundary_inputs.empty(), "learn needs the calibrate stage's activations; run --stage all "
               "or calibrate first");
    auto quantizer = make_quantizer(cfg.quant, cfg.seed);
    const RankShard& s = ctx.shard();
    Progress progress("learn", s.end_block - s.first_block, 0.0);
    nlohmann::json losses = nlohmann::json::object();
    for (int b = s.first_block; b < s.end_block; ++b) {
      auto t0 = std::chrono::steady_clock::now();
      BlockWeights fp = load_block(*ctx.files, ctx.model, b, ctx.device);
      std::array<HessianAccumulator, kNumTaps> stats;
      TapFn tap = [&](Tap t, const at::Tensor& x) { stats[static_cast<int>(t)].add(x); };
      {
        c10::NoGradGuard no_grad;
        for (auto& x : ctx.boundary_inputs) block_forward(fp, ctx.model, ctx.rope, x.to(ctx.device), &tap);
      }
      std::array<at::Tensor, kNumTaps> H;
      for (int t = 0; t < kNumTaps; ++t) H[t] = stats[t].mean();
      double t_stats = seconds_since(t0);
      BlockWeights q = fp;
      for (int l = 0; l < kNumLinears; ++l) {
        const Linear lin = static_cast<Linear>(l);
        const std::string name = linear_tensor_name(b, lin);
        QuantizedLinear ql = quantizer->quantize(fp[lin], H[static_cast<int>(tap_of(lin))], name);
        q[lin] = dequantize(ql).to(ctx.device);
        losses[name] = {{"loss", ql.loss}, {"loss_init", ql.loss_init}, {"seconds", ql.seconds},
                        {"rel_loss", ql.loss / std::max(1e-30, layer_loss(fp[lin], at::zeros_like(fp[lin]),
                                                                           H[static_cast<int>(tap_of(lin))]))}};
        log_debug("learn: {} loss {:.4e} (init {:.4e}) in {:.2f}s", name, ql.loss, ql.loss_init, ql.seconds);
        ctx.quantized[name] = std::move(ql);
      }
      {
        c10::NoGradGuard no_grad;
        const BlockWeights& next = cfg.calib.propagate == "quantized" ? q : fp;
        for (auto& x : ctx.boundary_inputs)
          x = block_forward(next, ctx.model, ctx.rope, x.to(ctx.device)).to(at::kCPU);
      }
      double t_block = seconds_since(t0);
      log_info("learn: block {} done in {:.1f}s (statistics {:.1f}s)", b, t_block, t_stats);
      progress.step(1, fmt::format("block {}", b));
    }
    progress.done();
    ctx.boundary_inputs.clear();
    ctx.rank_report["layer_losses"] = losses;
  }
};

}  // namespace

std::unique_ptr<Stage> make_learn_stage() { return std::make_unique<LearnStage>(); }

}  // namespace glvq
