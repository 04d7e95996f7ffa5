#pragma once
/// glvq-inspect: what a checkpoint (model.glvq.h5) or block file holds, per
/// layer and in total, as JSON (--json) or a table.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>

namespace glvq {

struct InspectOptions {
  /// Singular values of every G matrix (cost: one small SVD per group).
  bool conditioning = true;
  /// Read (and checksum) every array. False, for checkpoints only: read the layer
  /// headers, the arrays' sizes and the small per-group bit maps alone, which is
  /// what a report needs (the worker's report.html); conditioning is then skipped.
  bool read_arrays = true;
};

/// Reads PATH completely (checksums verified) and summarises it:
///   {"file", "kind": "checkpoint"|"block", "format_version", "file_bytes",
///    "root": {method, git_commit, bits_per_weight, ..., config} | {"block", "provenance"},
///    "layers": [{"name", "shape": [out, in], "method", "bits": {codes, ..., total},
///                "loss", "loss_init", "seconds", "attrs", "storage_bytes" (checkpoint),
///                "g_cond": {"max", "median", "groups", "singular"} (layers with G),
///                "bit_groups": {"<bits>": groups} (GLVQ: from its bit map; RTN/GPTQ: every group at bits)}],
///    "tensors": [{"name", "dtype", "shape", "bytes"}],
///    "totals": {"layers", "weights", "bits": {...}, "loss", "loss_init",
///               "unquantized_params", "unquantized_bytes", "ideal_bytes", "overhead_bytes"}}
/// ideal_bytes = bits_per_weight x weights / 8 + unquantized bytes; overhead_bytes =
/// file_bytes - ideal_bytes (HDF5 metadata; negative where deflate saved more).
/// Throws glvq::Error naming PATH for truncated, foreign or invalid files.
nlohmann::json inspect_file(const std::string& path, const InspectOptions& opt = {});

/// Conditioning of G [..., d, d] (any float dtype): per matrix sigma_max / sigma_min;
/// {"max", "median", "groups", "singular" (matrices with sigma_min == 0, left out of max/median)}.
nlohmann::json g_conditioning(const at::Tensor& G);

/// The summary as a human-readable table.
std::string inspect_text(const nlohmann::json& summary);

}  // namespace glvq
