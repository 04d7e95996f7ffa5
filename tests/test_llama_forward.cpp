// The LibTorch forward against naive scalar loops written from the Llama
// definition (no shared code with src/nn beyond the tensors it is given).
#include "nn/llama.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

using namespace glvq;

namespace {

LlamaConfig small_config(int heads, int kv_heads, int head_dim, double theta) {
  LlamaConfig c;
  c.hidden = heads * head_dim;
  c.intermediate = 24;
  c.n_layers = 1;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.vocab = 32;
  c.rope_theta = theta;
  c.rms_eps = 1e-5;
  return c;
}

// RoPE on one head vector at position p, HF rotate_half convention, in double.
std::vector<double> naive_rope(const std::vector<double>& x, int p, double theta) {
  const int d = static_cast<int>(x.size()), half = d / 2;
  std::vector<double> y(d);
  for (int i = 0; i < half; ++i) {
    double f = p / std::pow(theta, 2.0 * i / d);
    y[i] = x[i] * std::cos(f) - x[i + half] * std::sin(f);
    y[i + half] = x[i + half] * std::cos(f) + x[i] * std::sin(f);
  }
  return y;
}

}  // namespace

TEST(LlamaForward, RopeMatchesNaiveFormula) {
  for (double theta : {10000.0, 500000.0}) {
    LlamaConfig c = small_config(2, 1, 8, theta);
    Rope rope = make_rope(c, 16, at::kCPU);
    at::manual_seed(1);
    at::Tensor x = at::randn({1, 2, 16, 8});
    at::Tensor y = apply_rope(x, rope);
    for (int h = 0; h < 2; ++h)
      for (int t = 0; t < 16; ++t) {
        std::vector<double> v(8);
        for (int i = 0; i < 8; ++i) v[i] = x[0][h][t][i].item<double>();
        auto ref = naive_rope(v, t, theta);
        for (int i = 0; i < 8; ++i) EXPECT_NEAR(y[0][h][t][i].item<double>(), ref[i], 1e-4) << "t=" << t;
      }
  }
}

TEST(LlamaForward, GroupedCausalAttentionMatchesLoops) {
  const int B = 2, H = 4, KV = 2, T = 7, hd = 4;
  at::manual_seed(2);
  at::Tensor q = at::randn({B, H, T, hd}), k = at::randn({B, KV, T, hd}), v = at::randn({B, KV, T, hd});
  at::Tensor out = causal_attention(q, k, v);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / KV);
      for (int t = 0; t < T; ++t) {
        std::vector<double> s(t + 1);
        double mx = -1e300, z = 0;
        for (int u = 0; u <= t; ++u) {
          double dot = 0;
          for (int i = 0; i < hd; ++i) dot += q[b][h][t][i].item<double>() * k[b][g][u][i].item<double>();
          s[u] = dot / std::sqrt(double(hd));
          mx = std::max(mx, s[u]);
        }
        for (int u = 0; u <= t; ++u) z += std::exp(s[u] - mx);
        for (int i = 0; i < hd; ++i) {
          double acc = 0;
          for (int u = 0; u <= t; ++u) acc += std::exp(s[u] - mx) / z * v[b][g][u][i].item<double>();
          EXPECT_NEAR(out[b][h][t][i].item<double>(), acc, 1e-5);
        }
      }
    }
}

TEST(LlamaForward, MultiQueryAttentionSharesOneHead) {
  // With one KV head, every query head attends over the same keys/values.
  at::manual_seed(3);
  at::Tensor q = at::randn({1, 3, 5, 4}), k = at::randn({1, 1, 5, 4}), v = at::randn({1, 1, 5, 4});
  at::Tensor mqa = causal_attention(q, k, v);
  at::Tensor mha = causal_attention(q, k.expand({1, 3, 5, 4}).contiguous(), v.expand({1, 3, 5, 4}).contiguous());
  EXPECT_TRUE(at::allclose(mqa, mha, 1e-6, 1e-6));
}

TEST(LlamaForward, RmsNormMatchesDefinition) {
  at::manual_seed(4);
  at::Tensor x = at::randn({3, 10}), w = at::randn({10});
  at::Tensor y = rms_norm(x, w, 1e-5);
  for (int r = 0; r < 3; ++r) {
    double ms = 0;
    for (int i = 0; i < 10; ++i) ms += std::pow(x[r][i].item<double>(), 2) / 10;
    for (int i = 0; i < 10; ++i)
      EXPECT_NEAR(y[r][i].item<double>(), x[r][i].item<double>() / std::sqrt(ms + 1e-5) * w[i].item<double>(), 1e-5);
  }
}

namespace {

// A random block of small_config(2, 1, 4, .): hidden 8, one KV head of 4, intermediate 24.
BlockWeights random_block(const LlamaConfig& c, uint64_t seed) {
  BlockWeights w;
  at::manual_seed(seed);
  w.input_norm = at::rand({c.hidden}) + 0.5;
  w.post_norm = at::rand({c.hidden}) + 0.5;
  w[Linear::Q] = at::randn({8, 8}) * 0.3;
  w[Linear::K] = at::randn({4, 8}) * 0.3;
  w[Linear::V] = at::randn({4, 8}) * 0.3;
  w[Linear::O] = at::randn({8, 8}) * 0.3;
  w[Linear::Gate] = at::randn({24, 8}) * 0.3;
  w[Linear::Up] = at::randn({24, 8}) * 0.3;
  w[Linear::Down] = at::randn({8, 24}) * 0.3;
  return w;
}

// A tap that keeps a copy of each input it is shown in SEEN (one slot per tap, reset here).
TapFn record_into(std::vector<at::Tensor>& seen) {
  seen.assign(kNumTaps, at::Tensor());
  return [&seen](Tap t, const at::Tensor& in) { seen[static_cast<int>(t)] = in.clone(); };
}

}  // namespace

TEST(LlamaForward, BlockTapsSeeEachLinearInput) {
  LlamaConfig c = small_config(2, 1, 4, 10000);
  BlockWeights w = random_block(c, 5);
  Rope rope = make_rope(c, 6, at::kCPU);
  at::Tensor x = at::randn({2, 6, 8});
  std::vector<at::Tensor> seen;
  const TapFn tap = record_into(seen);
  at::Tensor y = block_forward(w, c, rope, x, &tap);
  // The MLP half re-derived from the taps: down's input must equal silu(gate m) * (up m).
  at::Tensor m = seen[static_cast<int>(Tap::MlpIn)];
  at::Tensor act = at::silu(at::matmul(m, w[Linear::Gate].t())) * at::matmul(m, w[Linear::Up].t());
  EXPECT_TRUE(at::allclose(act, seen[static_cast<int>(Tap::DownIn)], 1e-5, 1e-6));
  EXPECT_EQ(seen[static_cast<int>(Tap::AttnIn)].sizes(), (std::vector<int64_t>{12, 8}));
  EXPECT_EQ(y.sizes(), x.sizes());
}

TEST(LlamaForward, BlockForwardUntilStopsAtItsTap) {
  LlamaConfig c = small_config(2, 1, 4, 10000);
  BlockWeights w = random_block(c, 6);
  Rope rope = make_rope(c, 6, at::kCPU);
  at::Tensor x = at::randn({2, 6, 8});
  std::vector<at::Tensor> full, seen;
  const TapFn all = record_into(full);
  block_forward(w, c, rope, x, &all);
  for (int last = 0; last < kNumTaps; ++last) {
    block_forward_until(w, c, rope, x, static_cast<Tap>(last), record_into(seen));
    // the same operations in the same order: equal, not close; nothing after LAST is computed
    for (int t = 0; t < kNumTaps; ++t) {
      SCOPED_TRACE(std::string(tap_name(static_cast<Tap>(last))) + " / " + tap_name(static_cast<Tap>(t)));
      if (t <= last) {
        ASSERT_TRUE(seen[t].defined());
        EXPECT_TRUE(at::equal(seen[t], full[t]));
      } else {
        EXPECT_FALSE(seen[t].defined());
      }
    }
  }
}
