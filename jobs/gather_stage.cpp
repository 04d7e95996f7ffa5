// gather: rank 0 merges the block files into <output_dir>/model.glvq.h5 with
// the unquantized tensors, and accounts bits per weight from what was stored.
// With quant.finetune.e2e it first tunes every layer end to end (finetune/e2e_finetune.h).
#include "ckpt/block_file.h"
#include "ckpt/checkpoint.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "common/preempt.h"
#include "eval/corpus.h"
#include "finetune/e2e_finetune.h"
#include "jobs/e2e_result_files.h"
#include "jobs/interrupts.h"
#include "jobs/stage.h"
#include "text/tokenizer.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

namespace glvq {
namespace {

/// End-to-end fine-tuning of LAYERS (every block's, in memory) on rank 0, on the calibration
/// sequences the calibrate stage used; its figures go to report.json.
void finetune_end_to_end(JobContext& ctx, std::map<std::string, QuantizedLinear>& layers) {
  const CalibConfig& c = ctx.cfg.calib;
  const FinetuneConfig& ft = ctx.cfg.quant.finetune;
  const Tokenizer tok(ctx.cfg.model.path + "/tokenizer.model");
  const std::vector<int32_t> ids = tokenize_corpus(tok, read_text_file(ctx.cfg.data.calib));
  const at::Tensor samples = make_calib_samples(ids, c.ctx, c.samples, c.seed, ctx.cfg.data.calib);
  const BlockFinetuneOptions o = finetune_options(ft, ft.e2e_steps, ft.e2e_lr, ctx.cfg.seed);
  const auto t0 = std::chrono::steady_clock::now();
  const E2eFinetuneResult r = finetune_e2e(*ctx.files, ctx.model, samples, layers, ctx.device, o);
  ctx.report["finetune_e2e"] = r.to_json();
  ctx.timings["finetune_e2e"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

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
    const bool e2e = ctx.cfg.quant.finetune.e2e;
    nlohmann::json provenance = nlohmann::json::object();
    // End-to-end fine-tuning needs every layer at once; without it one block at a time is held.
    std::map<std::string, QuantizedLinear> all;
    if (e2e) {
      for (int b = 0; b < ctx.model.n_layers; ++b) {
        BlockFile bf = read_block_file(block_file_path(ctx.cfg.output_dir + "/blocks", b));
        GLVQ_CHECK(bf.block == b, "block file for block {} says it holds block {}", b, bf.block);
        for (auto& [name, q] : bf.layers) all.emplace(name, std::move(q));
        provenance[std::to_string(b)] = bf.provenance.value("quant_config_hash", "");
      }
      const nlohmann::json prov = e2e_provenance(ctx.cfg, layers_fingerprint(all));
      nlohmann::json stored;
      std::string why;
      if (ctx.resume && load_e2e_result(ctx.cfg.output_dir, ctx.model.n_layers, prov, all, stored, why)) {
        log_info("gather: reusing the end-to-end fine-tuned layers of {}/finetune (--resume)", ctx.cfg.output_dir);
        stored["reused"] = true;
        ctx.report["finetune_e2e"] = stored;
      } else {
        if (ctx.resume) log_info("gather: end-to-end fine-tuning again ({})", why);
        finetune_end_to_end(ctx, all);
        // Durable before the checkpoint: a stop from here on resumes without tuning again.
        save_e2e_result(ctx.cfg.output_dir, ctx.model.n_layers, all, prov, ctx.report["finetune_e2e"]);
      }
    }
    CheckpointWriter writer(out);
    BitsBreakdown bits;
    for (int b = 0; b < ctx.model.n_layers; ++b) {
      std::map<std::string, QuantizedLinear> block;
      if (e2e) {
        const std::string prefix = "model.layers." + std::to_string(b) + ".";
        for (auto it = all.lower_bound(prefix); it != all.end() && it->first.rfind(prefix, 0) == 0;)
          block.insert(all.extract(it++));
      } else {
        BlockFile bf = read_block_file(block_file_path(ctx.cfg.output_dir + "/blocks", b));
        GLVQ_CHECK(bf.block == b, "block file for block {} says it holds block {}", b, bf.block);
        block = std::move(bf.layers);
        provenance[std::to_string(b)] = bf.provenance.value("quant_config_hash", "");
      }
      for (auto& [name, q] : block) {
        throw_if_preempted("gather (between layers; the checkpoint is still a temporary file)");
        bits += count_bits(q);
        writer.add_layer(name, q);
      }
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
                       {"finetune", {{"block", ctx.cfg.quant.finetune.block}, {"e2e", e2e}}}};
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
