#pragma once
/// What a stored intermediate result depends on. Resume reuses a file only
/// when its provenance equals the current run's, so these functions decide
/// what "the same run" means (docs/FORMAT.md lists the keys).
#include "jobs/job_context.h"

#include <nlohmann/json.hpp>

namespace glvq {

/// The model's identity without reading its weights: config.json and the
/// tensor index (names, dtypes, shapes, byte ranges).
nlohmann::json model_identity(JobContext& ctx);
/// Activations entering block FIRST_BLOCK after the calibration pipeline.
nlohmann::json inputs_provenance(JobContext& ctx, int first_block, const std::string& calib_tokens_hash);
/// Block BLOCK's statistics and quantized result; reads the block's tensors to checksum them.
nlohmann::json block_provenance(JobContext& ctx, int block, const nlohmann::json& inputs_prov);

}  // namespace glvq
