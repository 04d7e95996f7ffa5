#pragma once
/// Calibration data that outlives a process, so that learning can resume
/// without recomputing it: per block, the input second moments of its four tap
/// points (<output_dir>/stats/block-<k>.h5), and per rank, the activations
/// entering its first block (<output_dir>/stats/inputs-block-<k>.h5). Both are
/// written to a temporary and renamed, and carry the provenance they were made
/// under; a file whose provenance differs is ignored and recomputed.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <array>
#include <optional>
#include <string>
#include <vector>

namespace glvq {

struct BlockStats {
  std::array<at::Tensor, 4> H;  ///< fp32 [in, in] by Tap (attn_in, o_in, mlp_in, down_in)
  int64_t tokens = 0;
};

std::string stats_path(const std::string& output_dir, int block);
std::string inputs_path(const std::string& output_dir, int first_block);

void save_block_stats(const std::string& path, const BlockStats& s, const nlohmann::json& provenance);
/// The stats when PATH exists, is intact and was made under PROVENANCE.
std::optional<BlockStats> load_block_stats(const std::string& path, const nlohmann::json& provenance);

/// ACTS: one tensor per micro-batch, [mb, T, hidden] (stored as one fp32 dataset each).
void save_activations(const std::string& path, const std::vector<at::Tensor>& acts, const nlohmann::json& provenance);
std::optional<std::vector<at::Tensor>> load_activations(const std::string& path, const nlohmann::json& provenance);

}  // namespace glvq
