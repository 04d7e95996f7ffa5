#include "jobs/disk_budget.h"

#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"

#include <algorithm>

namespace glvq {
namespace {

std::string gb(uint64_t bytes) {
  return bytes >= 1000000000 ? fmt::format("{:.2f} GB", double(bytes) / 1e9) : fmt::format("{:.1f} MB", double(bytes) / 1e6);
}

}  // namespace

uint64_t DiskBudget::total() const {
  const uint64_t all = checkpoint + blocks + statistics + activations;
  return all > reusable ? all - reusable : 0;
}

nlohmann::json DiskBudget::to_json() const {
  return {{"checkpoint", checkpoint}, {"blocks", blocks},     {"statistics", statistics},
          {"activations", activations}, {"reusable", reusable}, {"total", total()}};
}

DiskBudget estimate_disk_budget(const JobContext& ctx, const Plan& plan) {
  DiskBudget b;
  const Config& cfg = ctx.cfg;
  if (cfg.quant.method == "none") return b;  // nothing but plan.json, logs and report.json
  const LlamaConfig& m = ctx.model;
  int64_t per_block = 0;
  for (int l = 0; l < kNumLinears; ++l) {
    const auto shape = linear_weight_shape(m, static_cast<Linear>(l));
    per_block += shape[0] * shape[1];
  }
  const double code_bytes = double(per_block) * m.n_layers * cfg.quant.bits / 8.0;
  uint64_t unquantized = 0;
  for (const auto& name : unquantized_tensor_names(m, *ctx.files)) unquantized += ctx.files->peek(name).nbytes;
  b.checkpoint = uint64_t(code_bytes) + unquantized;
  b.blocks = uint64_t(code_bytes);

  // Hessians are fp32 [in, in] at the four tap points: q/k/v and gate/up share theirs.
  const uint64_t h = uint64_t(m.hidden), q = uint64_t(m.n_heads) * m.head_dim, f = uint64_t(m.intermediate);
  const uint64_t stats_per_block = 4 * (2 * h * h + q * q + f * f);
  const uint64_t kept = cfg.calib.keep_stats ? uint64_t(m.n_layers) : uint64_t(plan.world);
  b.statistics = stats_per_block * kept;
  b.activations = 4 * uint64_t(cfg.calib.samples) * uint64_t(cfg.calib.ctx) * h * uint64_t(plan.world);
  if (ctx.resume)
    b.reusable = file_bytes_in(cfg.output_dir + "/blocks") + file_bytes_in(cfg.output_dir + "/stats");
  return b;
}

void check_disk_space(const JobContext& ctx, const DiskBudget& need) {
  const std::string& dir = ctx.cfg.output_dir;
  const uint64_t free = free_bytes(dir);
  GLVQ_CHECK(need.total() <= free,
             "output_dir {}: this job writes at least {} there (checkpoint {}, block files {}, statistics {}, "
             "calibration activations {}{}) but its file system has {} free; free space there or point output_dir "
             "at a larger file system{}",
             dir, gb(need.total()), gb(need.checkpoint), gb(need.blocks), gb(need.statistics), gb(need.activations),
             need.reusable ? fmt::format(", less {} already there", gb(need.reusable)) : std::string(), gb(free),
             ctx.cfg.calib.keep_stats ? " (calib.keep_stats: false keeps one statistics file per rank)" : "");
  if (need.total() > 0) log_info("plan: output_dir needs at least {} ({} free)", gb(need.total()), gb(free));
}

}  // namespace glvq
