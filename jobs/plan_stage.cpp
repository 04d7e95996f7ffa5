// plan: rank 0 assigns block ranges, checks that every tensor they need
// exists and that output_dir has room for what the job writes, and broadcasts
// the plan; it is kept in <output_dir>/plan.json.
#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"
#include "jobs/disk_budget.h"
#include "jobs/pipeline.h"
#include "jobs/stage.h"

namespace glvq {
namespace {

std::vector<std::string> missing_tensors(ModelFiles& files, const LlamaConfig& cfg) {
  std::vector<std::string> needed = {"model.embed_tokens.weight", "model.norm.weight"};
  if (!cfg.tie_word_embeddings) needed.push_back("lm_head.weight");
  for (int l = 0; l < cfg.n_layers; ++l)
    for (auto& n : block_tensor_names(l)) needed.push_back(n);
  std::vector<std::string> missing;
  for (auto& n : needed)
    if (!files.has(n)) missing.push_back(n);
  return missing;
}

class PlanStage : public Stage {
 public:
  std::string name() const override { return "plan"; }
  void run(JobContext& ctx) override {
    std::string text, err;
    if (ctx.first_rank()) {
      try {
        auto missing = missing_tensors(*ctx.files, ctx.model);
        // A tied model may omit lm_head.weight; load_head falls back to the embedding then.
        GLVQ_CHECK(missing.empty(), "{}: {} tensor(s) the model needs are missing, first: {}", ctx.files->dir(),
                   missing.size(), missing.front());
        check_texts(ctx);
        // Before calibration: a config the learn stage would refuse is refused now.
        check_quant_plan(ctx.cfg.quant);
        Plan p = make_plan(ctx.model, ctx.comm->size());
        const DiskBudget disk = estimate_disk_budget(ctx, p);
        check_disk_space(ctx, disk);
        ctx.report["disk_estimate_bytes"] = disk.to_json();
        text = p.to_json().dump(2);
        write_file_atomic(ctx.cfg.output_dir + "/plan.json", text + "\n");
        for (const auto& s : p.shards)
          log_info("plan: rank {} owns blocks [{}, {}){}{} ({:.1f} M parameters)", s.rank, s.first_block,
                   s.end_block, s.has_embed ? " + embedding" : "", s.has_head ? " + norm/lm_head" : "",
                   double(s.params) / 1e6);
      } catch (const UsageError& e) {
        err = "U" + e.message();
      } catch (const Error& e) {
        err = "E" + e.message();
      }
    }
    ctx.comm->bcast_string(err);
    if (!err.empty()) {
      if (err[0] == 'U') throw UsageError(err.substr(1), __FILE__, __LINE__);
      GLVQ_FAIL("{}", err.substr(1));
    }
    ctx.comm->bcast_string(text);
    ctx.plan = Plan::from_json(nlohmann::json::parse(text));
    ctx.have_plan = true;
    ctx.rank_report["blocks"] = {ctx.shard().first_block, ctx.shard().end_block};
  }
};

}  // namespace

std::unique_ptr<Stage> make_plan_stage() { return std::make_unique<PlanStage>(); }

}  // namespace glvq
