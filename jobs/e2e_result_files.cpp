#include "jobs/e2e_result_files.h"

#include "ckpt/block_file.h"
#include "ckpt/checksum.h"
#include "ckpt/layer_io.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"

#include <fmt/format.h>

#include <vector>

namespace glvq {

std::string layers_fingerprint(const std::map<std::string, QuantizedLinear>& layers) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, q] : layers) {
    nlohmann::json arrays = nlohmann::json::object();
    for (const auto& [a, t] : q.arrays) {
      const at::Tensor c = t.contiguous();
      arrays[a] = {{"shape", c.sizes().vec()}, {"dtype", std::string(at::toString(c.scalar_type()))},
                   {"xxh64", checksum_bytes(c.data_ptr(), c.nbytes())}};
    }
    j[name] = {{"method", q.method}, {"out", q.out}, {"in", q.in}, {"arrays", arrays}, {"attrs", q.attrs},
               {"loss", q.loss}, {"loss_init", q.loss_init}, {"seconds", q.seconds}};
  }
  return hash_json(j);
}

nlohmann::json e2e_provenance(const Config& cfg, const std::string& fingerprint) {
  const FinetuneConfig& f = cfg.quant.finetune;
  const CalibConfig& c = cfg.calib;
  return {{"kind", "end-to-end fine-tuning"},
          {"from_layers", fingerprint},
          {"e2e", {{"steps", f.e2e_steps}, {"lr", f.e2e_lr}, {"batch", f.batch}, {"heldout", f.heldout},
                   {"eval_every", f.eval_every}, {"patience", f.patience}}},
          {"calib", {{"text", cfg.data.calib}, {"ctx", c.ctx}, {"samples", c.samples}, {"seed", c.seed}}},
          {"seed", cfg.seed}};
}

std::string e2e_block_path(const std::string& output_dir, int block) {
  return fmt::format("{}/finetune/e2e-block-{}.h5", output_dir, block);
}

void save_e2e_result(const std::string& output_dir, int first, int end,
                     const std::map<std::string, QuantizedLinear>& layers, const nlohmann::json& provenance,
                     const nlohmann::json& result) {
  GLVQ_CHECK(first >= 0 && end > first, "save_e2e_result: no blocks in [{}, {})", first, end);
  ensure_dir(output_dir + "/finetune");
  nlohmann::json prov = provenance;
  prov["result"] = result;
  std::vector<std::map<std::string, QuantizedLinear>> blocks(static_cast<size_t>(end - first));
  for (const auto& [name, q] : layers) {
    const int b = layer_path_of(name).block;
    GLVQ_CHECK(b >= first && b < end, "save_e2e_result: layer {} is outside blocks [{}, {})", name, first, end);
    blocks[size_t(b - first)].emplace(name, q);
  }
  for (int b = first; b < end; ++b) write_block_file(e2e_block_path(output_dir, b), b, blocks[size_t(b - first)], prov);
}

bool load_e2e_result(const std::string& output_dir, int n_blocks, const nlohmann::json& provenance,
                     std::map<std::string, QuantizedLinear>& layers, nlohmann::json& result, std::string& why) {
  // The stored report is the outcome, not a setting; the code version never decides.
  std::set<std::string> ignore = default_provenance_ignore();
  ignore.insert("result");
  std::map<std::string, QuantizedLinear> read;
  nlohmann::json stored;
  for (int b = 0; b < n_blocks; ++b) {
    BlockFile bf;
    const BlockFileCheck c = check_block_file(e2e_block_path(output_dir, b), provenance, b, ignore, &bf);
    if (c.state != BlockFileState::kMatches) {
      why = c.why;
      return false;
    }
    for (auto& [name, q] : bf.layers) read.emplace(name, std::move(q));
    stored = bf.provenance.value("result", nlohmann::json::object());
  }
  layers = std::move(read);
  result = std::move(stored);
  return true;
}

}  // namespace glvq
