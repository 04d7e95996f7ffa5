#pragma once
/// What a job will write into output_dir, estimated from the plan before any
/// work, so a job that cannot fit fails in seconds instead of hours in.
#include "jobs/job_context.h"

#include <nlohmann/json.hpp>

#include <cstdint>

namespace glvq {

/// Lower bounds in bytes: quantized data is counted at quant.bits per weight
/// without the lattice and scale overhead (a few percent).
struct DiskBudget {
  uint64_t checkpoint = 0;   ///< model.glvq.h5 (codes + unquantized tensors)
  uint64_t blocks = 0;       ///< blocks/block-<k>.h5 of every block
  uint64_t statistics = 0;   ///< stats/block-<k>.h5 kept at once (one per rank unless calib.keep_stats)
  uint64_t activations = 0;  ///< stats/inputs-block-<k>.h5 of every rank (fp32)
  uint64_t reusable = 0;     ///< bytes already in blocks/ and stats/ that the job overwrites or reuses
  uint64_t total() const;    ///< what the job still needs: the sum of the above minus reusable
  nlohmann::json to_json() const;
};

DiskBudget estimate_disk_budget(const JobContext& ctx, const Plan& plan);
/// Throws naming output_dir, the estimate and the free space when the job cannot fit; logs both otherwise.
void check_disk_space(const JobContext& ctx, const DiskBudget& need);

}  // namespace glvq
