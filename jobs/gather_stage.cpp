// gather: the ranks' quantized layers are accounted (bits per weight with
// every overhead) and merged on rank 0.
#include "common/error.h"
#include "common/log.h"
#include "jobs/stage.h"

namespace glvq {
namespace {

nlohmann::json bits_json(const BitsBreakdown& b) {
  return {{"codes", b.codes},   {"lattice", b.lattice}, {"companding", b.companding}, {"scales", b.scales},
          {"bitmap", b.bitmap}, {"transform", b.transform}, {"other", b.other}, {"total", b.total()},
          {"weights", b.weights}};
}

int64_t unquantized_params(const LlamaConfig& c) {
  int64_t p = int64_t(c.vocab) * c.hidden * (c.tie_word_embeddings ? 1 : 2) + c.hidden;
  return p + int64_t(c.n_layers) * 2 * c.hidden;
}

class GatherStage : public Stage {
 public:
  std::string name() const override { return "gather"; }
  void run(JobContext& ctx) override {
    if (ctx.cfg.quant.method == "none") return;
    BitsBreakdown local;
    for (auto& [name, q] : ctx.quantized) local += count_bits(q);
    auto parts = ctx.comm->gather_strings(bits_json(local).dump());
    if (!ctx.first_rank()) return;
    BitsBreakdown all;
    for (auto& p : parts) {
      auto j = nlohmann::json::parse(p);
      BitsBreakdown b;
      b.codes = j["codes"]; b.lattice = j["lattice"]; b.companding = j["companding"]; b.scales = j["scales"];
      b.bitmap = j["bitmap"]; b.transform = j["transform"]; b.other = j["other"]; b.weights = j["weights"];
      all += b;
    }
    GLVQ_CHECK(all.weights > 0, "no quantized layers were produced");
    const double model_bits =
        all.total() * double(all.weights) + 16.0 * double(unquantized_params(ctx.model));
    ctx.report["bits_per_weight"] = all.total();
    ctx.report["code_bits_per_weight"] = all.codes;
    ctx.report["bits_breakdown"] = bits_json(all);
    ctx.report["bits_per_weight_model"] = model_bits / double(all.weights + unquantized_params(ctx.model));
    log_info("gather: {:.4f} bits per weight over {} quantized weights (codes {:.4f})", all.total(), all.weights,
             all.codes);
  }
};

}  // namespace

std::unique_ptr<Stage> make_gather_stage() { return std::make_unique<GatherStage>(); }

}  // namespace glvq
