// gather: rank 0 merges the block files into <output_dir>/model.glvq.h5 with
// the unquantized tensors, and accounts bits per weight from what was stored.
#include "ckpt/block_file.h"
#include "ckpt/checkpoint.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/preempt.h"
#include "jobs/interrupts.h"
#include "jobs/stage.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

namespace glvq {
namespace {

class GatherStage : public Stage {
 public:
  std::string name() const override { return "gather"; }
  void run(JobContext& ctx) override {
    if (ctx.cfg.quant.method == "none") return;
    ctx.comm->barrier();  // every rank's block files are complete
    if (!ctx.first_rank()) return;
    const std::string out = ctx.cfg.output_dir + "/model.glvq.h5";
    // A gather killed before its rename leaves model.glvq.h5.tmp-<pid>: never valid, only dead weight.
    for (const auto& e : std::filesystem::directory_iterator(ctx.cfg.output_dir))
      if (e.path().filename().string().rfind("model.glvq.h5.tmp-", 0) == 0) {
        log_warn("gather: removing {} left by an interrupted gather", e.path().string());
        std::filesystem::remove(e.path());
      }
    CheckpointWriter writer(out);
    BitsBreakdown bits;
    nlohmann::json provenance = nlohmann::json::object();
    for (int b = 0; b < ctx.model.n_layers; ++b) {
      BlockFile bf = read_block_file(block_file_path(ctx.cfg.output_dir + "/blocks", b));
      GLVQ_CHECK(bf.block == b, "block file for block {} says it holds block {}", b, bf.block);
      for (auto& [name, q] : bf.layers) {
        throw_if_preempted("gather (between layers; the checkpoint is still a temporary file)");
        bits += count_bits(q);
        writer.add_layer(name, q);
      }
      provenance[std::to_string(b)] = bf.provenance.value("quant_config_hash", "");
      stage_boundary("gather", ctx.comm->rank(), b + 1);  // the checkpoint is still a temporary file
    }
    int64_t unquantized = 0, unquantized_bits = 0;
    for (const auto& name : unquantized_tensor_names(ctx.model, *ctx.files)) {
      throw_if_preempted("gather (the unquantized tensors; the checkpoint is still a temporary file)");
      const TensorView& v = ctx.files->get(name);
      writer.add_tensor(v);
      unquantized += v.numel();
      unquantized_bits += int64_t(v.nbytes) * 8;
    }
    CheckpointInfo info;
    info.model_config = ctx.model.raw.dump(2);
    info.config = config_to_json(ctx.cfg).dump();
    info.method = ctx.cfg.quant.method;
    info.git_commit = GLVQ_GIT_COMMIT;
    // Which fine-tuning ran (its settings are in info.config and in each block's hash).
    info.provenance = {{"block_quant_config_hash", provenance},
                       {"finetune", {{"block", ctx.cfg.quant.finetune.block}}}};
    writer.finish(info);
    // An earlier run's report describes the checkpoint just replaced; if this run stops before
    // validate writes its own, the directory must not pair the new checkpoint with the old report.
    for (const char* name : {"/report.json", "/report.html"}) {
      const std::string report = ctx.cfg.output_dir + name;
      if (file_exists(report)) {
        std::remove(report.c_str());
        log_info("gather: removed the earlier run's {} (it described the replaced checkpoint)", report);
      }
    }
    GLVQ_CHECK(bits.weights > 0, "no quantized layers were produced");
    ctx.report["bits_per_weight"] = bits.total();
    ctx.report["code_bits_per_weight"] = bits.codes;
    ctx.report["bits_breakdown"] = bits_breakdown_json(bits);
    ctx.report["bits_per_weight_model"] =
        (bits.total() * double(bits.weights) + double(unquantized_bits)) / double(bits.weights + unquantized);
    ctx.report["checkpoint"] = out;
    log_info("gather: {} written; {:.4f} bits per weight over {} quantized weights (codes {:.4f})", out,
             bits.total(), bits.weights, bits.codes);
  }
};

}  // namespace

std::unique_ptr<Stage> make_gather_stage() { return std::make_unique<GatherStage>(); }

}  // namespace glvq
