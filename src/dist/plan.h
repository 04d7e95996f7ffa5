#pragma once
/// Which rank owns which transformer blocks: contiguous ranges balanced by
/// parameter count, embedding on the first rank, final norm + lm_head on the last.
#include "config/config.h"
#include "model/llama_config.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace glvq {

struct RankShard {
  int rank = 0;
  int first_block = 0;  ///< inclusive
  int end_block = 0;    ///< exclusive
  bool has_embed = false, has_head = false;
  int64_t params = 0;   ///< parameters this rank maps
};

struct Plan {
  int world = 1;
  int n_layers = 0;
  std::vector<RankShard> shards;  ///< one per rank, in rank order
  const RankShard& of(int rank) const { return shards.at(rank); }
  int owner_of_block(int block) const;
  nlohmann::json to_json() const;
  static Plan from_json(const nlohmann::json& j);
};

/// Balances blocks over WORLD ranks, minimising the largest rank's parameters.
/// Throws a UsageError when there are more ranks than blocks.
Plan make_plan(const LlamaConfig& cfg, int world);

/// Parameters of one block / of the embedding / of the head, from the config.
int64_t block_params(const LlamaConfig& cfg);

/// Refuses (UsageError, exit 2) before calibration a quantization config the
/// learn stage would refuse (bits, method options, the shaped code's rules).
/// quant.method none passes.
void check_quant_plan(const QuantConfig& qc);

}  // namespace glvq
