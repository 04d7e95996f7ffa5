// One whole decoder block of the LibTorch forward against a scalar fp64 reference
// written from the Llama definition, at the head shapes of real Llama-family models:
// head_dim 64, 80, 96, 100 and 128, multi-head, grouped (ratios 3, 5, 7) and
// multi-query attention. No code is shared with src/nn beyond the weights.
#include "nn/llama.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

using namespace glvq;

namespace {

struct Shape {
  const char* what;
  int heads, kv_heads, head_dim;
};

/// Row-major double copy of a float tensor.
std::vector<double> dvec(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

/// y[t][o] = sum_i W[o][i] x[t][i] for x [T][in], W [out][in].
std::vector<double> linear(const std::vector<double>& x, const std::vector<double>& W, int T, int in, int out) {
  std::vector<double> y(size_t(T) * out, 0.0);
  for (int t = 0; t < T; ++t)
    for (int o = 0; o < out; ++o) {
      double acc = 0;
      for (int i = 0; i < in; ++i) acc += W[size_t(o) * in + i] * x[size_t(t) * in + i];
      y[size_t(t) * out + o] = acc;
    }
  return y;
}

std::vector<double> rms(const std::vector<double>& x, const std::vector<double>& w, int T, int n, double eps) {
  std::vector<double> y(x.size());
  for (int t = 0; t < T; ++t) {
    double ms = 0;
    for (int i = 0; i < n; ++i) ms += x[size_t(t) * n + i] * x[size_t(t) * n + i] / n;
    for (int i = 0; i < n; ++i) y[size_t(t) * n + i] = x[size_t(t) * n + i] / std::sqrt(ms + eps) * w[i];
  }
  return y;
}

/// RoPE (HF rotate_half) of every head of x [T][heads * hd], position t.
void rope(std::vector<double>& x, int T, int heads, int hd, double theta) {
  const int half = hd / 2;
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < heads; ++h) {
      double* v = x.data() + size_t(t) * heads * hd + size_t(h) * hd;
      for (int i = 0; i < half; ++i) {
        const double f = t / std::pow(theta, 2.0 * i / hd), a = v[i], b = v[i + half];
        v[i] = a * std::cos(f) - b * std::sin(f);
        v[i + half] = b * std::cos(f) + a * std::sin(f);
      }
    }
}

/// The block, in double: x [T][hidden] -> [T][hidden].
std::vector<double> naive_block(const BlockWeights& w, const LlamaConfig& c, const std::vector<double>& x, int T) {
  const int h = c.hidden, H = c.n_heads, KV = c.n_kv_heads, hd = c.head_dim, I = c.intermediate;
  const std::vector<double> n1 = rms(x, dvec(w.input_norm), T, h, c.rms_eps);
  std::vector<double> q = linear(n1, dvec(w[Linear::Q]), T, h, H * hd);
  std::vector<double> k = linear(n1, dvec(w[Linear::K]), T, h, KV * hd);
  const std::vector<double> v = linear(n1, dvec(w[Linear::V]), T, h, KV * hd);
  rope(q, T, H, hd, c.rope_theta);
  rope(k, T, KV, hd, c.rope_theta);
  std::vector<double> att(size_t(T) * H * hd, 0.0);
  for (int head = 0; head < H; ++head) {
    const int g = head / (H / KV);  // query head -> its key/value head
    for (int t = 0; t < T; ++t) {
      std::vector<double> s(t + 1);
      double mx = -1e300, z = 0;
      for (int u = 0; u <= t; ++u) {
        double dot = 0;
        for (int i = 0; i < hd; ++i) dot += q[(size_t(t) * H + head) * hd + i] * k[(size_t(u) * KV + g) * hd + i];
        s[u] = dot / std::sqrt(double(hd));
        mx = std::max(mx, s[u]);
      }
      for (int u = 0; u <= t; ++u) z += std::exp(s[u] - mx);
      for (int i = 0; i < hd; ++i) {
        double acc = 0;
        for (int u = 0; u <= t; ++u) acc += std::exp(s[u] - mx) / z * v[(size_t(u) * KV + g) * hd + i];
        att[(size_t(t) * H + head) * hd + i] = acc;
      }
    }
  }
  const std::vector<double> o = linear(att, dvec(w[Linear::O]), T, H * hd, h);
  std::vector<double> r(x.size());
  for (size_t i = 0; i < r.size(); ++i) r[i] = x[i] + o[i];
  const std::vector<double> n2 = rms(r, dvec(w.post_norm), T, h, c.rms_eps);
  const std::vector<double> gate = linear(n2, dvec(w[Linear::Gate]), T, h, I);
  const std::vector<double> up = linear(n2, dvec(w[Linear::Up]), T, h, I);
  std::vector<double> act(gate.size());
  for (size_t i = 0; i < act.size(); ++i) act[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
  const std::vector<double> down = linear(act, dvec(w[Linear::Down]), T, I, h);
  for (size_t i = 0; i < r.size(); ++i) r[i] += down[i];
  return r;
}

TEST(LlamaShapes, BlockMatchesScalarReference) {
  const std::vector<Shape> shapes = {
      {"MHA, head_dim 64", 4, 4, 64},
      {"SmolLM2-360M heads (15 / 5: GQA 3), head_dim 64", 15, 5, 64},
      {"Qwen2-0.5B heads (14 / 2: GQA 7), head_dim 64", 14, 2, 64},
      {"GQA 5, head_dim 80", 5, 1, 80},
      {"GQA 3, head_dim 96", 6, 2, 96},
      {"OpenLLaMA-3B head_dim 100 (MHA)", 4, 4, 100},
      {"MQA, head_dim 100", 3, 1, 100},
      {"GQA 2, head_dim 128", 4, 2, 128},
      {"MQA, head_dim 128", 2, 1, 128},
  };
  const int T = 6;
  for (const Shape& s : shapes) {
    SCOPED_TRACE(s.what);
    LlamaConfig c;
    c.n_heads = s.heads;
    c.n_kv_heads = s.kv_heads;
    c.head_dim = s.head_dim;
    c.hidden = s.heads * s.head_dim;
    c.intermediate = 40;
    c.n_layers = 1;
    c.vocab = 16;
    c.rope_theta = 10000.0;
    c.rms_eps = 1e-5;
    at::manual_seed(1000 + s.heads * 131 + s.head_dim);
    const int h = c.hidden, q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
    BlockWeights w;
    w.input_norm = at::rand({h}) + 0.5;
    w.post_norm = at::rand({h}) + 0.5;
    w[Linear::Q] = at::randn({q, h}) / std::sqrt(double(h));
    w[Linear::K] = at::randn({kv, h}) / std::sqrt(double(h));
    w[Linear::V] = at::randn({kv, h}) / std::sqrt(double(h));
    w[Linear::O] = at::randn({h, q}) / std::sqrt(double(q));
    w[Linear::Gate] = at::randn({c.intermediate, h}) / std::sqrt(double(h));
    w[Linear::Up] = at::randn({c.intermediate, h}) / std::sqrt(double(h));
    w[Linear::Down] = at::randn({h, c.intermediate}) / std::sqrt(double(c.intermediate));
    const Rope rp = make_rope(c, T, at::kCPU);
    const at::Tensor x = at::randn({1, T, h});
    const at::Tensor y = block_forward(w, c, rp, x).contiguous();
    const std::vector<double> ref = naive_block(w, c, dvec(x), T);
    double worst = 0, scale = 0;
    const float* yp = y.data_ptr<float>();
    for (size_t i = 0; i < ref.size(); ++i) {
      worst = std::max(worst, std::fabs(yp[i] - ref[i]));
      scale = std::max(scale, std::fabs(ref[i]));
    }
    std::printf("[ block    ] %s: max |y - ref| %.3g (max |ref| %.3g)\n", s.what, worst, scale);
    EXPECT_LT(worst, 1e-4 * scale);
  }
}

}  // namespace
