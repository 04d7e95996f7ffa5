// gather: rank 0 merges the block files into <output_dir>/model.glvq.h5 with
// the unquantized tensors, and accounts bits per weight from what was stored.
// With quant.finetune.e2e every rank first tunes its blocks' layers end to end, as a stage of
// a pipeline over the ranks (finetune/e2e_finetune.h).
#include "ckpt/block_file.h"
#include "ckpt/checkpoint.h"
#include "ckpt/layer_io.h"
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

/// End-to-end fine-tuning of LAYERS (the rank's blocks', in memory; with one rank every
/// block's) on the calibration sequences the calibrate stage used, every rank of the job
/// a stage of the pipeline (its plan's blocks); its figures go to report.json.
void finetune_end_to_end(JobContext& ctx, std::map<std::string, QuantizedLinear>& layers) {
  const CalibConfig& c = ctx.cfg.calib;
  const FinetuneConfig& ft = ctx.cfg.quant.finetune;
  const Tokenizer tok(ctx.cfg.model.path + "/tokenizer.model");
  const std::vector<int32_t> ids = tokenize_corpus(tok, read_text_file(ctx.cfg.data.calib));
  const at::Tensor samples = make_calib_samples(ids, c.ctx, c.samples, c.seed, ctx.cfg.data.calib);
  const BlockFinetuneOptions o = finetune_options(ft, ft.e2e_steps, ft.e2e_lr, ctx.cfg.seed);
  E2ePipeline pipe;
  pipe.rank = ctx.comm->rank();
  pipe.size = ctx.comm->size();
  if (pipe.size > 1) {
    pipe.first_block = ctx.shard().first_block;
    pipe.end_block = ctx.shard().end_block;
    Comm* comm = ctx.comm;
    const at::Device dev = ctx.device;
    pipe.send = [comm](const at::Tensor& t, int dst, int tag) { comm->send_tensor(t.contiguous(), dst, tag); };
    pipe.recv = [comm, dev](int src, int tag) { return comm->recv_tensor(src, tag, dev); };
    pipe.allreduce_sum = [comm](double x) { return comm->allreduce_sum(x); };
  }
  const auto t0 = std::chrono::steady_clock::now();
  const E2eFinetuneResult r = finetune_e2e(*ctx.files, ctx.model, samples, layers, ctx.device, o, pipe);
  ctx.report["finetune_e2e"] = r.to_json();
  ctx.timings["finetune_e2e"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Reads the block files of blocks [FIRST, END) into LAYERS, and their configuration hashes
/// into HASHES (when given).
void read_blocks(const JobContext& ctx, int first, int end, std::map<std::string, QuantizedLinear>& layers,
                 nlohmann::json* hashes) {
  for (int b = first; b < end; ++b) {
    BlockFile bf = read_block_file(block_file_path(ctx.cfg.output_dir + "/blocks", b));
    GLVQ_CHECK(bf.block == b, "block file for block {} says it holds block {}", b, bf.block);
    for (auto& [name, q] : bf.layers) layers.emplace(name, std::move(q));
    if (hashes) (*hashes)[std::to_string(b)] = bf.provenance.value("quant_config_hash", "");
  }
}

/// quant.finetune.e2e, on every rank. Rank 0 reads every block file, and with --resume
/// reuses the stored tuning when it was made from the same layers and settings; otherwise
/// every rank tunes its plan's blocks as a stage of the pipeline and stores them in
/// finetune/ (durable before the checkpoint: a stop from then on resumes without tuning
/// again), and rank 0 reads the whole result back. Returns true on rank 0, with ALL = every
/// block's tuned layers and HASHES their blocks' configuration hashes; false elsewhere.
bool tune_end_to_end(JobContext& ctx, std::map<std::string, QuantizedLinear>& all, nlohmann::json& hashes) {
  const int n = ctx.model.n_layers;
  const bool pipelined = ctx.comm->size() > 1;
  std::string prov_text, why;
  int32_t reuse = 0;
  if (ctx.first_rank()) {
    read_blocks(ctx, 0, n, all, &hashes);
    const nlohmann::json prov = e2e_provenance(ctx.cfg, layers_fingerprint(all));
    prov_text = prov.dump();
    nlohmann::json stored;
    if (ctx.resume && load_e2e_result(ctx.cfg.output_dir, n, prov, all, stored, why)) {
      log_info("gather: reusing the end-to-end fine-tuned layers of {}/finetune (--resume)", ctx.cfg.output_dir);
      stored["reused"] = true;
      ctx.report["finetune_e2e"] = stored;
      reuse = 1;
    } else if (ctx.resume) {
      log_info("gather: end-to-end fine-tuning again ({})", why);
    }
  }
  if (pipelined) {
    std::vector<int32_t> flag = {reuse};
    ctx.comm->bcast_ints(flag);
    reuse = flag[0];
    ctx.comm->bcast_string(prov_text);
  }
  if (reuse) return ctx.first_rank();
  const nlohmann::json prov = nlohmann::json::parse(prov_text);
  const RankShard& s = ctx.shard();
  std::map<std::string, QuantizedLinear> mine;
  if (!pipelined) {
    mine = std::move(all);
  } else if (ctx.first_rank()) {
    for (const auto& [name, q] : all) {
      const int b = layer_path_of(name).block;
      if (b >= s.first_block && b < s.end_block) mine.emplace(name, q);
    }
  } else {
    read_blocks(ctx, s.first_block, s.end_block, mine, nullptr);
  }
  finetune_end_to_end(ctx, mine);
  save_e2e_result(ctx.cfg.output_dir, pipelined ? s.first_block : 0, pipelined ? s.end_block : n, mine, prov,
                  ctx.report["finetune_e2e"]);
  if (!pipelined) {
    all = std::move(mine);
    return true;
  }
  ctx.comm->barrier();  // every rank's tuned blocks are on disk
  if (!ctx.first_rank()) return false;
  nlohmann::json stored;
  std::map<std::string, QuantizedLinear> tuned;
  GLVQ_CHECK(load_e2e_result(ctx.cfg.output_dir, n, prov, tuned, stored, why),
             "gather: the end-to-end fine-tuned layers the ranks stored do not read back: {}", why);
  all = std::move(tuned);
  return true;
}

class GatherStage : public Stage {
 public:
  std::string name() const override { return "gather"; }
  void run(JobContext& ctx) override {
    if (ctx.cfg.quant.method == "none") return;
    ctx.comm->barrier();  // every rank's block files are complete
    const bool e2e = ctx.cfg.quant.finetune.e2e;
    // End-to-end fine-tuning runs on every rank (a pipeline over the plan's blocks); the
    // checkpoint is rank 0's alone.
    if (!ctx.first_rank() && !e2e) return;
    const std::string out = ctx.cfg.output_dir + "/model.glvq.h5";
    // A gather killed before its rename leaves model.glvq.h5.tmp-<pid>: never valid, only dead weight.
    for (const auto& e : std::filesystem::directory_iterator(ctx.cfg.output_dir))
      if (ctx.first_rank() && e.path().filename().string().rfind("model.glvq.h5.tmp-", 0) == 0) {
        log_warn("gather: removing {} left by an interrupted gather", e.path().string());
        std::filesystem::remove(e.path());
      }
    nlohmann::json provenance = nlohmann::json::object();
    // End-to-end fine-tuning needs every layer at once; without it one block at a time is held.
    std::map<std::string, QuantizedLinear> all;
    if (e2e) {
      if (!tune_end_to_end(ctx, all, provenance)) return;  // ranks other than 0: their part is done
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
        read_blocks(ctx, b, b + 1, block, &provenance);
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
