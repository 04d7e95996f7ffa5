// The block plan against a brute-force search over every contiguous split.
#include "dist/plan.h"

#include "common/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

using namespace glvq;

namespace {
LlamaConfig cfg_with(int layers, int vocab, bool tied) {
  LlamaConfig c;
  c.hidden = 64; c.intermediate = 172; c.n_layers = layers; c.n_heads = 4; c.n_kv_heads = 2; c.head_dim = 16;
  c.vocab = vocab; c.tie_word_embeddings = tied;
  return c;
}

// The smallest possible maximum load over all contiguous splits (brute force).
int64_t best_max_load(const LlamaConfig& c, int world) {
  const int64_t bp = block_params(c), ep = int64_t(c.vocab) * c.hidden;
  const int64_t head = c.hidden + (c.tie_word_embeddings ? 0 : ep);
  int64_t best = INT64_MAX;
  std::vector<int> cuts;
  std::function<void(int, int)> rec = [&](int r, int start) {
    if (r == world - 1) {
      int64_t mx = 0;
      int s = 0;
      for (int k = 0; k < world; ++k) {
        int e = k == world - 1 ? c.n_layers : cuts[k];
        int64_t load = int64_t(e - s) * bp + (k == 0 ? ep : 0) + (k == world - 1 ? head : 0);
        mx = std::max(mx, load);
        s = e;
      }
      best = std::min(best, mx);
      return;
    }
    for (int e = start + 1; e <= c.n_layers - (world - 1 - r); ++e) {
      cuts.push_back(e);
      rec(r + 1, e);
      cuts.pop_back();
    }
  };
  rec(0, 0);
  return best;
}
}  // namespace

TEST(Plan, CoversEveryBlockOnceAndIsOptimal) {
  for (int layers : {1, 2, 5, 6, 9})
    for (int vocab : {16, 4096, 60000})
      for (bool tied : {false, true})
        for (int world = 1; world <= std::min(layers, 5); ++world) {
          LlamaConfig c = cfg_with(layers, vocab, tied);
          Plan p = make_plan(c, world);
          ASSERT_EQ(static_cast<int>(p.shards.size()), world);
          int next = 0;
          int64_t mx = 0;
          for (const auto& s : p.shards) {
            EXPECT_EQ(s.first_block, next);
            EXPECT_GT(s.end_block, s.first_block) << "every rank owns a block";
            next = s.end_block;
            mx = std::max(mx, s.params);
          }
          EXPECT_EQ(next, layers);
          EXPECT_TRUE(p.shards.front().has_embed);
          EXPECT_TRUE(p.shards.back().has_head);
          EXPECT_EQ(mx, best_max_load(c, world)) << layers << " layers, " << world << " ranks";
          Plan back = Plan::from_json(p.to_json());
          EXPECT_EQ(back.to_json(), p.to_json());
        }
}

TEST(Plan, MoreRanksThanBlocksIsAUsageError) {
  LlamaConfig c = cfg_with(3, 100, false);
  try {
    make_plan(c, 4);
    FAIL() << "expected an error";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("only 3 transformer blocks"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- quantization check at plan time

namespace {
std::string usage_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.message();
  }
  return "";
}
}  // namespace

TEST(PlanQuant, EveryMethodsDefaultsPass) {
  for (const char* method : {"none", "rtn", "gptq", "glvq"}) {
    QuantConfig qc;
    qc.method = method;
    EXPECT_NO_THROW(check_quant_plan(qc)) << method;
  }
}

TEST(PlanQuant, ShapedCodeRulesComeBeforeCalibration) {
  QuantConfig qc;
  qc.method = "glvq";
  qc.glvq.code = "shaped";
  qc.glvq.companding = false;
  for (int64_t gs : {128, 16, 0, 24}) {
    qc.glvq.group_size = gs;
    qc.glvq.dim = gs == 24 ? 24 : 8;
    EXPECT_NO_THROW(check_quant_plan(qc)) << gs;
  }
  qc.glvq.dim = 12;
  qc.glvq.group_size = 24;
  EXPECT_NE(usage_message([&] { check_quant_plan(qc); }).find("multiple of 8"), std::string::npos);
  qc.glvq.dim = 8;
  qc.glvq.companding = true;
  EXPECT_NE(usage_message([&] { check_quant_plan(qc); }).find("companding"), std::string::npos);
}

TEST(PlanQuant, MethodOptionErrorsComeBeforeCalibration) {
  QuantConfig qc;
  qc.method = "gptq";
  qc.bits = 2.5;
  EXPECT_NE(usage_message([&] { check_quant_plan(qc); }).find("integer"), std::string::npos);
  qc.bits = 3;
  qc.gptq.static_groups = false;
  EXPECT_NE(usage_message([&] { check_quant_plan(qc); }).find("static_groups"), std::string::npos);
}
