// A Llama of another shape than the fixture (MQA, rope_theta 5e5, fp16 single
// file, no head_dim, tied embeddings), written here, loaded through the real
// loaders and run by the LibTorch forward, against a scalar double-precision
// forward written from the Llama definition.
#include "model/llama_config.h"
#include "model/model_files.h"
#include "model/safetensors.h"
#include "nn/llama.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>

using namespace glvq;

namespace {

using Mat = std::vector<std::vector<double>>;  // [out][in]

Mat to_mat(const at::Tensor& t) {
  at::Tensor d = t.to(at::kDouble).contiguous();
  Mat m(d.size(0), std::vector<double>(d.size(1)));
  for (int64_t i = 0; i < d.size(0); ++i)
    for (int64_t j = 0; j < d.size(1); ++j) m[i][j] = d[i][j].item<double>();
  return m;
}
std::vector<double> matvec(const Mat& w, const std::vector<double>& x) {
  std::vector<double> y(w.size(), 0.0);
  for (size_t i = 0; i < w.size(); ++i)
    for (size_t j = 0; j < x.size(); ++j) y[i] += w[i][j] * x[j];
  return y;
}
std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& g, double eps) {
  double ms = 0;
  for (double v : x) ms += v * v / double(x.size());
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ms + eps) * g[i];
  return y;
}
void rope(double* v, int d, int pos, double theta) {
  for (int i = 0; i < d / 2; ++i) {
    double f = pos / std::pow(theta, 2.0 * i / d), a = v[i], b = v[i + d / 2];
    v[i] = a * std::cos(f) - b * std::sin(f);
    v[i + d / 2] = b * std::cos(f) + a * std::sin(f);
  }
}

}  // namespace

TEST(LlamaVariants, MqaFp16SingleFileMatchesScalarForward) {
  const int hidden = 32, heads = 4, kv = 1, inter = 48, layers = 2, vocab = 64, T = 7;
  const double theta = 500000.0, eps = 1e-6;
  char tmpl[] = "/tmp/glvq-variant-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::ofstream(dir + "/config.json") << R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 1, "vocab_size": 64, "rope_theta": 500000.0, "rms_norm_eps": 1e-6,
    "torch_dtype": "float16", "tie_word_embeddings": true, "max_position_embeddings": 64})";
  at::manual_seed(11);
  std::map<std::string, at::Tensor> w;  // fp16, as stored
  auto add = [&](const std::string& n, std::vector<int64_t> shape, double scale, double offset = 0) {
    w[n] = (at::randn(shape) * scale + offset).to(at::kHalf).contiguous();
  };
  add("model.embed_tokens.weight", {vocab, hidden}, 1.0);
  add("model.norm.weight", {hidden}, 0.1, 1.0);
  const int hd = hidden / heads;
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {hidden}, 0.1, 1.0);
    add(p + "post_attention_layernorm.weight", {hidden}, 0.1, 1.0);
    add(p + "self_attn.q_proj.weight", {hidden, hidden}, 0.2);
    add(p + "self_attn.k_proj.weight", {kv * hd, hidden}, 0.2);
    add(p + "self_attn.v_proj.weight", {kv * hd, hidden}, 0.2);
    add(p + "self_attn.o_proj.weight", {hidden, hidden}, 0.2);
    add(p + "mlp.gate_proj.weight", {inter, hidden}, 0.2);
    add(p + "mlp.up_proj.weight", {inter, hidden}, 0.2);
    add(p + "mlp.down_proj.weight", {hidden, inter}, 0.2);
  }
  std::vector<TensorToWrite> out;
  for (auto& [n, t] : w) out.push_back({n, DType::F16, t.sizes().vec(), t.data_ptr()});
  write_safetensors(dir + "/model.safetensors", out);

  // The project's path: config variants, single-file loader, LibTorch forward.
  LlamaConfig cfg = load_llama_config(dir);
  ASSERT_EQ(cfg.head_dim, hd);
  ASSERT_EQ(cfg.n_kv_heads, 1);
  ASSERT_TRUE(cfg.tie_word_embeddings);
  ModelFiles files(dir);
  std::vector<int64_t> ids = {3, 17, 5, 63, 0, 42, 9};
  at::Tensor tokens = at::tensor(ids).view({1, T});
  HeadWeights head = load_head(files, cfg, true, true, at::kCPU);
  Rope rp = make_rope(cfg, T, at::kCPU);
  at::Tensor x = at::embedding(head.embed, tokens);
  for (int l = 0; l < layers; ++l) x = block_forward(load_block(files, cfg, l, at::kCPU), cfg, rp, x);
  at::Tensor logits = at::linear(rms_norm(x, head.norm, cfg.rms_eps), head.lm_head)[0];

  // The scalar reference, from the stored fp16 values.
  auto vec = [&](const std::string& n) {
    at::Tensor t = w[n].to(at::kDouble);
    return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
  };
  Mat emb = to_mat(w["model.embed_tokens.weight"]);
  std::vector<std::vector<double>> h(T);
  for (int t = 0; t < T; ++t) h[t] = emb[ids[t]];
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    Mat q = to_mat(w[p + "self_attn.q_proj.weight"]), k = to_mat(w[p + "self_attn.k_proj.weight"]),
        v = to_mat(w[p + "self_attn.v_proj.weight"]), o = to_mat(w[p + "self_attn.o_proj.weight"]),
        g = to_mat(w[p + "mlp.gate_proj.weight"]), u = to_mat(w[p + "mlp.up_proj.weight"]),
        dn = to_mat(w[p + "mlp.down_proj.weight"]);
    std::vector<std::vector<double>> Q(T), K(T), V(T);
    for (int t = 0; t < T; ++t) {
      auto a = rmsnorm(h[t], vec(p + "input_layernorm.weight"), eps);
      Q[t] = matvec(q, a), K[t] = matvec(k, a), V[t] = matvec(v, a);
      for (int hh = 0; hh < heads; ++hh) rope(&Q[t][hh * hd], hd, t, theta);
      rope(&K[t][0], hd, t, theta);
    }
    for (int t = 0; t < T; ++t) {
      std::vector<double> att(hidden, 0.0);
      for (int hh = 0; hh < heads; ++hh) {
        std::vector<double> s(t + 1);
        double mx = -1e300, z = 0;
        for (int j = 0; j <= t; ++j) {
          double dot = 0;
          for (int i = 0; i < hd; ++i) dot += Q[t][hh * hd + i] * K[j][i];
          s[j] = dot / std::sqrt(double(hd));
          mx = std::max(mx, s[j]);
        }
        for (int j = 0; j <= t; ++j) z += std::exp(s[j] - mx);
        for (int j = 0; j <= t; ++j)
          for (int i = 0; i < hd; ++i) att[hh * hd + i] += std::exp(s[j] - mx) / z * V[j][i];
      }
      auto ao = matvec(o, att);
      for (int i = 0; i < hidden; ++i) h[t][i] += ao[i];
      auto m = rmsnorm(h[t], vec(p + "post_attention_layernorm.weight"), eps);
      auto gv = matvec(g, m), uv = matvec(u, m);
      for (int i = 0; i < inter; ++i) gv[i] = gv[i] / (1 + std::exp(-gv[i])) * uv[i];
      auto dv = matvec(dn, gv);
      for (int i = 0; i < hidden; ++i) h[t][i] += dv[i];
    }
  }
  double max_err = 0, max_ref = 0;
  for (int t = 0; t < T; ++t) {
    auto ref = matvec(emb, rmsnorm(h[t], vec("model.norm.weight"), eps));  // tied lm_head
    for (int c = 0; c < vocab; ++c) {
      max_err = std::max(max_err, std::abs(logits[t][c].item<double>() - ref[c]));
      max_ref = std::max(max_ref, std::abs(ref[c]));
    }
  }
  EXPECT_LT(max_err, 1e-4 * std::max(1.0, max_ref)) << "max |logit error| " << max_err << " of " << max_ref;
  EXPECT_EQ(files.tensors_read().size(), w.size()) << "every tensor read exactly through the loader";
  std::system(("rm -rf " + dir).c_str());
}
