// learn: block by block, the rank derives each linear's input statistics from
// the activations entering the block, quantizes the block's seven linears,
// stores them durably (blocks/block-<k>.h5), and passes the activations on
// through the quantized (or full-precision) block. With --resume, a block whose
// file matches this run is read back instead of learned again.
#include "ckpt/block_file.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/preempt.h"
#include "common/splitmix.h"
#include "finetune/block_finetune.h"
#include "jobs/interrupts.h"
#include "jobs/provenance.h"
#include "jobs/stage.h"
#include "nn/gpu_memory.h"
#include "quant/glvq_bits_carry.h"
#include "quant/quantizer.h"
#include "stats/hessian.h"
#include "stats/sequential_target.h"
#include "stats/stats_file.h"

#include <c10/core/GradMode.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

namespace glvq {
namespace {

// quant.sequential's damping of H before solving for the target, as a share of its mean
// diagonal (GPTQ's default damping).
constexpr double kSequentialDamp = 0.01;

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

BlockStats collect_stats(JobContext& ctx, const BlockWeights& fp) {
  c10::NoGradGuard no_grad;
  std::array<HessianAccumulator, kNumTaps> acc;
  TapFn tap = [&](Tap t, const at::Tensor& x) { acc[static_cast<int>(t)].add(x); };
  for (auto& x : ctx.boundary_inputs) {
    throw_if_preempted("learn (a block's input statistics)");
    block_forward(fp, ctx.model, ctx.rope, x.to(ctx.device, at::kFloat), &tap);
  }
  BlockStats s;
  for (int t = 0; t < kNumTaps; ++t) s.H[t] = acc[t].mean();
  s.tokens = acc[0].tokens();
  return s;
}

// quant.sequential: the inputs at TAP of the block whose linears [0, DONE) are LAYERS (the rest
// FP), beside the FP block's on the same calibration tokens.
CrossAccumulator sequential_stats(JobContext& ctx, int b, const BlockWeights& fp,
                                  const std::map<std::string, QuantizedLinear>& layers, int done, Tap tap) {
  c10::NoGradGuard no_grad;
  BlockWeights partial = fp;
  for (int l = 0; l < done; ++l)
    partial.w[l] = dequantize_on(layers.at(linear_tensor_name(b, static_cast<Linear>(l))), ctx.device);
  CrossAccumulator acc;
  for (const auto& x : ctx.boundary_inputs) {
    throw_if_preempted("learn (a block's sequential statistics)");
    const at::Tensor in = x.to(ctx.device, at::kFloat);
    at::Tensor a_fp, a_q;
    const TapFn take_fp = [&](Tap t, const at::Tensor& a) { if (t == tap) a_fp = a; };
    const TapFn take_q = [&](Tap t, const at::Tensor& a) { if (t == tap) a_q = a; };
    block_forward_until(fp, ctx.model, ctx.rope, in, tap, take_fp);
    block_forward_until(partial, ctx.model, ctx.rope, in, tap, take_q);
    acc.add(a_fp, a_q);
  }
  return acc;
}

BlockFinetuneOptions block_finetune_options(const Config& cfg, int b) {
  const FinetuneConfig& f = cfg.quant.finetune;
  uint64_t s = cfg.seed ^ (0x66696e6574756e65ull + static_cast<uint64_t>(b));  // per block, from the run's seed
  return finetune_options(f, f.steps, f.lr, splitmix64(s));
}

// quant.finetune.block: tunes LAYERS' continuous parameters against the FP block's output and
// recomputes each layer's loss under its input statistics, against the FP weight (also when the
// tuning is not kept, if the layers were quantized from tuned weights: PHASES not empty).
void finetune_layers(JobContext& ctx, int b, const BlockWeights& fp, const BlockStats& stats,
                     std::map<std::string, QuantizedLinear>& layers, nlohmann::json& losses,
                     nlohmann::json& finetune_report, const nlohmann::json& phases) {
  std::array<QuantizedLinear, kNumLinears> arr;
  for (int l = 0; l < kNumLinears; ++l) arr[l] = layers.at(linear_tensor_name(b, static_cast<Linear>(l)));
  const BlockFinetuneResult r = finetune_block(fp, ctx.model, ctx.rope, ctx.boundary_inputs, arr, ctx.device,
                                               block_finetune_options(ctx.cfg, b), fmt::format("block {}", b));
  nlohmann::json& rep = finetune_report[std::to_string(b)];
  rep = r.to_json();
  if (!phases.empty()) rep["unquantized_phases"] = phases;
  if (!r.kept && phases.empty()) return;
  for (int l = 0; l < kNumLinears; ++l) {
    const Linear lin = static_cast<Linear>(l);
    const std::string name = linear_tensor_name(b, lin);
    const at::Tensor H = stats.H[static_cast<int>(tap_of(lin))].to(fp[lin].device());
    arr[l].loss = layer_loss(fp[lin], dequantize_on(arr[l], ctx.device), H);
    const double ref = layer_loss(fp[lin], at::zeros_like(fp[lin]), H);
    nlohmann::json& e = losses[name];
    e["loss_before_finetune"] = e["loss"];
    e["loss"] = arr[l].loss;
    e["rel_loss"] = arr[l].loss / std::max(1e-30, ref);
    layers[name] = std::move(arr[l]);
  }
}

// quant.finetune.unquantized: with linears [0, DONE) of block B quantized, tunes them and the
// full weights W of the rest together (finetune_partial_block); the rest are then quantized
// from the tuned W.
nlohmann::json tune_unquantized(JobContext& ctx, int b, const BlockWeights& fp,
                                std::map<std::string, QuantizedLinear>& layers, int done,
                                std::array<at::Tensor, kNumLinears>& W) {
  std::array<QuantizedLinear, kNumLinears> arr;
  for (int l = 0; l < done; ++l) arr[l] = layers.at(linear_tensor_name(b, static_cast<Linear>(l)));
  const std::string label = fmt::format("block {} after {}", b, linear_suffix(static_cast<Linear>(done - 1)));
  const BlockFinetuneResult r = finetune_partial_block(fp, ctx.model, ctx.rope, ctx.boundary_inputs, arr, done, W,
                                                       ctx.device, block_finetune_options(ctx.cfg, b), label);
  if (r.kept)
    for (int l = 0; l < done; ++l) layers[linear_tensor_name(b, static_cast<Linear>(l))] = std::move(arr[l]);
  nlohmann::json j = r.to_json();
  j["quantized"] = done;
  return j;
}

// The block's quantized layers: read back from a matching block file (--resume) or learned now
// (and fine-tuned with quant.finetune.block; the file is written only after that).
std::map<std::string, QuantizedLinear> quantize_block(JobContext& ctx, Quantizer& quantizer, int b,
                                                      const BlockWeights& fp, nlohmann::json& losses,
                                                      nlohmann::json& finetune_report) {
  const std::string path = block_file_path(ctx.cfg.output_dir + "/blocks", b);
  const nlohmann::json prov = block_provenance(ctx, b, ctx.inputs_provenance);
  if (ctx.resume) {
    BlockFile contents;
    BlockFileCheck check = check_block_file(path, prov, b, default_provenance_ignore(), &contents);
    switch (check.state) {
      case BlockFileState::kMatches:
        log_info("learn: block {} reused from {} (--resume)", b, path);
        return std::move(contents.layers);
      case BlockFileState::kMismatch:
        throw UsageError(fmt::format("--resume: {}; this run's setting differs from the one the block was made "
                                     "with. Use the original settings, or a new output_dir", check.why),
                         __FILE__, __LINE__);
      case BlockFileState::kInvalid:
        log_warn("learn: {}; learning block {} again", check.why, b);
        std::remove(path.c_str());
        break;
      case BlockFileState::kAbsent: break;
    }
  }
  const std::string spath = stats_path(ctx.cfg.output_dir, b);
  std::optional<BlockStats> stats;
  if (ctx.resume) stats = load_block_stats(spath, prov);
  if (!stats) {
    stats = collect_stats(ctx, fp);
    save_block_stats(spath, *stats, prov);
  }
  std::map<std::string, QuantizedLinear> layers;
  // What each linear is quantized from: its FP weight, or with quant.finetune.unquantized the
  // weight tuned after the earlier phases (q/k/v, o, gate/up: QuIP#'s order).
  std::array<at::Tensor, kNumLinears> W = fp.w;
  const bool tune_rest = ctx.cfg.quant.finetune.block && ctx.cfg.quant.finetune.unquantized;
  nlohmann::json phases = nlohmann::json::array();
  // Fractional targets (GLVQ's; RTN and GPTQ take integers, which the carry leaves alone):
  // each layer asks for what brings the block back to quant.bits.
  BitsCarry bits(ctx.cfg.quant.bits);
  std::optional<CrossAccumulator> seq;  // quant.sequential: the current tap's statistics
  for (int l = 0; l < kNumLinears; ++l) {
    throw_if_preempted("learn (between layers)");  // the block's file is written only once all are done
    const Linear lin = static_cast<Linear>(l);
    const std::string name = linear_tensor_name(b, lin);
    at::Tensor H = stats->H[static_cast<int>(tap_of(lin))];
    if (sequential_applies(ctx.cfg.quant) && tap_of(lin) != Tap::AttnIn) {
      // the first linear of a tap (o, gate, down) gathers it; up shares gate's
      if (l == 0 || tap_of(static_cast<Linear>(l - 1)) != tap_of(lin))
        seq = sequential_stats(ctx, b, fp, layers, l, tap_of(lin));
      H = seq->H();
      W[l] = sequential_target(fp[lin], seq->C(), H, kSequentialDamp);
    }
    const double target = bits.next(fp[lin].numel());
    std::unique_ptr<Quantizer> retargeted;
    if (target != ctx.cfg.quant.bits) {
      QuantConfig qc = ctx.cfg.quant;
      qc.bits = target;
      retargeted = make_quantizer(qc, ctx.cfg.seed);
      log_info("learn: {} at {:.4f} code bits (quant.bits {} over the block so far: {:.4f})", name, target,
               ctx.cfg.quant.bits, bits.average());
    }
    QuantizedLinear ql = (retargeted ? *retargeted : quantizer).quantize(W[l], H.to(ctx.device), name);
    bits.spent(fp[lin].numel(), count_bits(ql).codes);
    const double ref = layer_loss(W[l], at::zeros_like(W[l]), H.to(W[l].device()));
    losses[name] = {{"loss", ql.loss}, {"loss_init", ql.loss_init}, {"seconds", ql.seconds},
                    {"rel_loss", ql.loss / std::max(1e-30, ref)}};
    log_info("learn: {} relative loss {:.4e} (start {:.4e}) in {:.2f}s", name, ql.loss / std::max(1e-30, ref),
             ql.loss_init / std::max(1e-30, ref), ql.seconds);
    layers[name] = std::move(ql);
    if (tune_rest && (lin == Linear::V || lin == Linear::O || lin == Linear::Up))
      phases.push_back(tune_unquantized(ctx, b, fp, layers, l + 1, W));
  }
  if (ctx.cfg.quant.finetune.block) finetune_layers(ctx, b, fp, *stats, layers, losses, finetune_report, phases);
  write_block_file(path, b, layers, prov);
  if (!ctx.cfg.calib.keep_stats) std::remove(spath.c_str());  // the block file now stands for them
  return layers;
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
    GLVQ_CHECK(!ctx.boundary_inputs.empty(), "learn needs the calibrate stage's activations; run --stage all, "
               "or calibrate first and then learn with --resume");
    auto quantizer = make_quantizer(cfg.quant, cfg.seed);
    const RankShard& s = ctx.shard();
    ensure_dir(cfg.output_dir + "/blocks");
    ensure_dir(cfg.output_dir + "/stats");
    Progress progress("learn", s.end_block - s.first_block, 0.0);
    nlohmann::json losses = nlohmann::json::object(), finetune = nlohmann::json::object();
    for (int b = s.first_block; b < s.end_block; ++b) {
      auto t0 = std::chrono::steady_clock::now();
      BlockWeights fp = load_block(*ctx.files, ctx.model, b, ctx.device);
      auto layers = quantize_block(ctx, *quantizer, b, fp, losses, finetune);
      if (b + 1 < s.end_block) {
        c10::NoGradGuard no_grad;
        BlockWeights next = fp;
        if (cfg.calib.propagate == "quantized")
          for (int l = 0; l < kNumLinears; ++l)
            next.w[l] = dequantize_on(layers.at(linear_tensor_name(b, static_cast<Linear>(l))), ctx.device);
        for (auto& x : ctx.boundary_inputs) {
          throw_if_preempted("learn (the activations into the next block)");
          x = block_forward(next, ctx.model, ctx.rope, x.to(ctx.device, at::kFloat)).to(at::kCPU, x.scalar_type());
        }
      }
      if (ctx.device.is_cuda()) gpu_memory_sample();
      log_info("learn: block {} done in {:.1f}s", b, seconds_since(t0));
      progress.step(1, fmt::format("block {}", b));
      stage_boundary("learn", ctx.comm->rank(), b - s.first_block + 1);
    }
    progress.done();
    ctx.boundary_inputs.clear();
    ctx.rank_report["layer_losses"] = losses;
    if (cfg.quant.finetune.block) ctx.rank_report["block_finetune"] = finetune;
  }
};

}  // namespace

std::unique_ptr<Stage> make_learn_stage() { return std::make_unique<LearnStage>(); }

}  // namespace glvq
