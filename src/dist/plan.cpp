#include "dist/plan.h"

#include "common/error.h"
#include "quant/quantizer.h"

#include <algorithm>
#include <limits>

namespace glvq {

int64_t block_params(const LlamaConfig& c) {
  const int64_t h = c.hidden, q = int64_t(c.n_heads) * c.head_dim, kv = int64_t(c.n_kv_heads) * c.head_dim;
  return 2 * h + h * q * 2 + h * kv * 2 + 3 * h * int64_t(c.intermediate);
}

int Plan::owner_of_block(int block) const {
  for (const auto& s : shards)
    if (block >= s.first_block && block < s.end_block) return s.rank;
  GLVQ_FAIL("block {} is not assigned to any rank", block);
}

nlohmann::json Plan::to_json() const {
  nlohmann::json j;
  j["world"] = world;
  j["n_layers"] = n_layers;
  for (const auto& s : shards)
    j["shards"].push_back({{"rank", s.rank}, {"first_block", s.first_block}, {"end_block", s.end_block},
                           {"has_embed", s.has_embed}, {"has_head", s.has_head}, {"params", s.params}});
  return j;
}

Plan Plan::from_json(const nlohmann::json& j) {
  Plan p;
  p.world = j.at("world");
  p.n_layers = j.at("n_layers");
  for (const auto& s : j.at("shards"))
    p.shards.push_back({s.at("rank"), s.at("first_block"), s.at("end_block"), s.at("has_embed"), s.at("has_head"),
                        s.at("params")});
  return p;
}

Plan make_plan(const LlamaConfig& cfg, int world) {
  const int L = cfg.n_layers;
  GLVQ_USAGE_CHECK(world >= 1, "need at least one rank");
  GLVQ_USAGE_CHECK(world <= L,
                   "{} ranks were started but the model has only {} transformer blocks: every rank needs at "
                   "least one block; start at most {} ranks (mpirun -np {})", world, L, L, L);
  const int64_t bp = block_params(cfg), ep = int64_t(cfg.vocab) * cfg.hidden;
  const int64_t head = cfg.hidden + (cfg.tie_word_embeddings ? 0 : ep);
  // cost(r, i, j): parameters of rank r owning blocks [i, j).
  auto cost = [&](int r, int i, int j) {
    int64_t c = int64_t(j - i) * bp;
    if (r == 0) c += ep;
    if (r == world - 1) c += head;
    return c;
  };
  // best[r][j]: the smallest max load when ranks 0..r-1 own blocks [0, j).
  const int64_t inf = std::numeric_limits<int64_t>::max();
  std::vector<std::vector<int64_t>> best(world + 1, std::vector<int64_t>(L + 1, inf));
  std::vector<std::vector<int>> cut(world + 1, std::vector<int>(L + 1, 0));
  best[0][0] = 0;
  for (int r = 1; r <= world; ++r)
    for (int j = r; j <= L - (world - r); ++j)
      for (int i = r - 1; i < j; ++i) {
        if (best[r - 1][i] == inf) continue;
        int64_t v = std::max(best[r - 1][i], cost(r - 1, i, j));
        if (v < best[r][j]) best[r][j] = v, cut[r][j] = i;
      }
  Plan p;
  p.world = world;
  p.n_layers = L;
  p.shards.resize(world);
  for (int r = world, j = L; r >= 1; --r) {
    int i = cut[r][j];
    p.shards[r - 1] = {r - 1, i, j, r == 1, r == world, cost(r - 1, i, j)};
    j = i;
  }
  return p;
}

void check_quant_plan(const QuantConfig& qc) {
  // Every method takes any layer width (a narrower last group, glvq_codec.h), so
  // what can fail is the method's options, which building the quantizer checks.
  if (qc.method != "none") make_quantizer(qc, 0);
}

}  // namespace glvq
