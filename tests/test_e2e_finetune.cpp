// End-to-end fine-tuning (src/finetune/e2e_finetune.h) on the real tiny-llama:
// the held-out KL it reports against a forward pass written here (dequantized
// weights, log-softmax in fp64), a real gain on an RTN 2-bit model, and never a
// worse model when the steps diverge.
#include "finetune/e2e_finetune.h"
#include "common/fs_util.h"
#include "config/config.h"
#include "jobs/e2e_result_files.h"
#include "model/model_files.h"
#include "nn/llama.h"
#include "quant/quantizer.h"
#include "text/tokenizer.h"
#include "base/test_util.h"

#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

using namespace glvq;

namespace {

constexpr uint64_t kSeed = 4242;

struct Fixture {
  std::string dir = glvq::test::source_dir() + "/models/tiny-llama";
  ModelFiles files{dir};
  LlamaConfig cfg = load_llama_config(dir);
  at::Tensor tokens;  ///< [n, T] int64 from the calibration text
  std::map<std::string, QuantizedLinear> layers;

  Fixture(int64_t n, int64_t T) {
    std::ifstream in(glvq::test::source_dir() + "/data/calib.txt");
    std::stringstream text;
    text << in.rdbuf();
    const Tokenizer tok(dir + "/tokenizer.model");
    std::vector<int32_t> ids = tok.encode(text.str().substr(0, 40000));
    ids.resize(size_t(n * T));
    tokens = at::tensor(std::vector<int64_t>(ids.begin(), ids.end())).view({n, T});
    // Every linear RTN at 2 bits: far from the FP model, so tuning the scales has room.
    QuantConfig qc;
    qc.method = "rtn";
    qc.bits = 2;
    auto quant = make_quantizer(qc, kSeed);
    for (int b = 0; b < cfg.n_layers; ++b) {
      const BlockWeights w = load_block(files, cfg, b, at::kCPU);
      for (int l = 0; l < kNumLinears; ++l) {
        const at::Tensor W = w.w[l];
        const at::Tensor H = at::eye(W.size(1));
        layers.emplace(linear_tensor_name(b, static_cast<Linear>(l)), quant->quantize(W, H, "l"));
      }
    }
  }

  /// Mean over positions of KL(P_fp || P_q) on ROWS, written out: dense dequantized weights,
  /// log-softmax of the logits in fp64.
  double kl_reference(const std::vector<int64_t>& rows, const std::map<std::string, QuantizedLinear>& q) {
    c10::NoGradGuard ng;
    const HeadWeights head = load_head(files, cfg, true, true, at::kCPU);
    const at::Tensor tok = tokens.index_select(0, at::tensor(rows, at::kLong));
    const int64_t n = tok.size(0), T = tok.size(1);
    const Rope rope = make_rope(cfg, T, at::kCPU);
    at::Tensor xf = head.embed.index_select(0, tok.reshape({-1})).view({n, T, cfg.hidden}), xq = xf;
    for (int b = 0; b < cfg.n_layers; ++b) {
      const BlockWeights fp = load_block(files, cfg, b, at::kCPU);
      BlockWeights qw = fp;
      for (int l = 0; l < kNumLinears; ++l) qw.w[l] = dequantize(q.at(linear_tensor_name(b, static_cast<Linear>(l))));
      xf = block_forward(fp, cfg, rope, xf);
      xq = block_forward(qw, cfg, rope, xq);
    }
    auto logp = [&](const at::Tensor& x) {
      const at::Tensor h = rms_norm(x.narrow(1, 0, T - 1), head.norm, cfg.rms_eps);
      return at::log_softmax(at::linear(h, head.lm_head).to(at::kDouble), -1);
    };
    const at::Tensor lp = logp(xf), lq = logp(xq);
    return (lp.exp() * (lp - lq)).sum(-1).mean().item<double>();
  }
};

BlockFinetuneOptions options(int steps, double lr) {
  BlockFinetuneOptions o;
  o.steps = steps;
  o.lr = lr;
  o.batch = 2;
  o.heldout = 0.25;
  o.eval_every = 5;
  o.patience = 2;
  o.seed = kSeed;
  return o;
}

TEST(E2eFinetune, LowersTheHeldOutKlOfTinyLlamaAsReportedAndStored) {
  Fixture f(8, 64);
  const BlockFinetuneOptions o = options(20, 3e-3);
  const auto held = finetune_heldout_sequences(8, o);
  const double before = f.kl_reference(held, f.layers);
  auto layers = f.layers;
  const E2eFinetuneResult r = finetune_e2e(f.files, f.cfg, f.tokens, layers, at::kCPU, o);
  const double after = f.kl_reference(held, layers);
  EXPECT_NEAR(r.heldout_before, before, 1e-4 * before);
  EXPECT_NEAR(r.heldout_after, after, 1e-4 * before);
  EXPECT_TRUE(r.kept);
  EXPECT_LT(after, 0.9 * before) << "held-out KL " << before << " -> " << after;
  EXPECT_EQ(r.heldout_seqs, 2);
  EXPECT_EQ(r.train_seqs, 6);
  // Only continuous parameters moved: the codes and zero points are the input's, the scales not all.
  int scales_moved = 0;
  for (const auto& [name, q] : layers) {
    EXPECT_TRUE(at::equal(q.arrays.at("codes"), f.layers.at(name).arrays.at("codes"))) << name;
    EXPECT_TRUE(at::equal(q.arrays.at("zero"), f.layers.at(name).arrays.at("zero"))) << name;
    scales_moved += !at::equal(q.arrays.at("scale"), f.layers.at(name).arrays.at("scale"));
  }
  EXPECT_EQ(scales_moved, int(layers.size()));
}

TEST(E2eFinetune, NeverWorseOnTheHeldOutSet) {
  // A learning rate that wrecks the model: nothing is kept, every layer is the input's.
  Fixture f(4, 32);
  auto layers = f.layers;
  const E2eFinetuneResult r = finetune_e2e(f.files, f.cfg, f.tokens, layers, at::kCPU, options(5, 50.0));
  EXPECT_FALSE(r.kept);
  EXPECT_EQ(r.heldout_after, r.heldout_before);
  for (const auto& [name, q] : layers)
    for (const auto& [key, a] : q.arrays) EXPECT_TRUE(at::equal(a, f.layers.at(name).arrays.at(key))) << name << key;
}

TEST(E2eFinetune, ResultFilesRoundTripAndMatchOnlyTheirStartAndSettings) {
  Fixture f(2, 16);
  const glvq::test::TempDir tmp;
  const std::string& dir = tmp.path();
  Config cfg;
  const nlohmann::json prov = e2e_provenance(cfg, layers_fingerprint(f.layers));
  const nlohmann::json result = {{"steps", 7}, {"heldout_after", 0.125}};
  save_e2e_result(dir, 0, f.cfg.n_layers, f.layers, prov, result);
  std::map<std::string, QuantizedLinear> back;
  nlohmann::json r;
  std::string why;
  ASSERT_TRUE(load_e2e_result(dir, f.cfg.n_layers, prov, back, r, why)) << why;
  EXPECT_EQ(r, result);
  EXPECT_EQ(layers_fingerprint(back), layers_fingerprint(f.layers));  // every array, attribute and loss
  // Other starting layers (one scale moved, as a block learned again would) are another start.
  auto moved = f.layers;
  at::Tensor s = moved.begin()->second.arrays.at("scale").clone();
  s.view(-1)[0] = s.view(-1)[0] * 2;
  moved.begin()->second.arrays["scale"] = s;
  EXPECT_NE(layers_fingerprint(moved), layers_fingerprint(f.layers));
  std::map<std::string, QuantizedLinear> untouched;
  EXPECT_FALSE(load_e2e_result(dir, f.cfg.n_layers, e2e_provenance(cfg, layers_fingerprint(moved)), untouched, r, why));
  EXPECT_NE(why.find("from_layers"), std::string::npos) << why;
  EXPECT_TRUE(untouched.empty());
  // Another setting, and a missing block file.
  Config other = cfg;
  other.quant.finetune.e2e_lr *= 2;
  EXPECT_FALSE(load_e2e_result(dir, f.cfg.n_layers, e2e_provenance(other, layers_fingerprint(f.layers)), back, r, why));
  EXPECT_NE(why.find("e2e.lr"), std::string::npos) << why;
  remove_tree(dir + "/finetune/e2e-block-3.h5");
  EXPECT_FALSE(load_e2e_result(dir, f.cfg.n_layers, prov, back, r, why));
  EXPECT_NE(why.find("e2e-block-3.h5"), std::string::npos) << why;
}

}  // namespace
