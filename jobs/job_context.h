#pragma once
/// What the stages of one glvq-worker run share on a rank.
#include "config/config.h"
#include "dist/comm.h"
#include "dist/plan.h"
#include "model/llama_config.h"
#include "model/model_files.h"
#include "nn/llama.h"
#include "quant/quantizer.h"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace glvq {

struct JobContext {
  Config cfg;
  Comm* comm = nullptr;
  bool resume = false;
  LlamaConfig model;
  std::unique_ptr<ModelFiles> files;
  Plan plan;
  bool have_plan = false;
  at::Device device = at::kCPU;
  Rope rope;

  /// calibrate -> learn: this rank's first block's inputs, one tensor per micro-batch.
  std::vector<at::Tensor> boundary_inputs;
  nlohmann::json inputs_provenance;  ///< what boundary_inputs depend on (jobs/provenance.h)
  /// Rank 0: texts tokenized by check_texts (plan stage), taken by broadcast_tokens.
  std::map<std::string, std::vector<int32_t>> tokens;

  /// Facts for report.json: each rank fills its own, rank 0 merges.
  nlohmann::json rank_report = nlohmann::json::object();
  nlohmann::json report = nlohmann::json::object();  ///< rank 0 only
  std::map<std::string, double> timings;

  const RankShard& shard() const { return plan.of(comm->rank()); }
  /// How boundary_inputs are held on the host (calib.activation_dtype); computation is float32.
  at::ScalarType activation_dtype() const {
    return cfg.calib.activation_dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  }
  bool first_rank() const { return comm->rank() == 0; }
  bool last_rank() const { return comm->rank() == comm->size() - 1; }
};

}  // namespace glvq
