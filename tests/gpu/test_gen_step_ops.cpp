// The fused decode-step ops (kernels/gen_step_ops.cuh) against LibTorch references on the
// CPU (the same ops gen_forward runs, or double precision for attention), on random seeded
// inputs with odd shapes; outputs are poisoned first (NaN) so unwritten values fail, and
// cache positions past the query's are NaN so any read past it fails. Then the whole fused
// step (src/gen/cuda/cuda_step.h) against gen_forward on tiny-llama for 32 decode steps.
// Run by the lead on the GPU machine:
//   build/glvq_gpu_tests --gtest_filter='GenStep*'
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include "common/error.h"
#include "gen_step_ops.cuh"
#include "glvq_test_util.h"
#include "nn/llama.h"

#ifdef GLVQ_WITH_TORCH_CUDA
#include "gen/cuda/cuda_step.h"
#include "gen/gen_forward.h"
#include "model/model_files.h"
#endif

#include <cmath>
#include <cstdio>
#include <limits>

namespace glvq {
namespace {

using test::DevBuf;

#define SKIP_WITHOUT_GPU() \
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device"

/// fp16 values of N(0, 1) (CPU, kHalf), from SEED (printed with any failure by the callers' traces).
at::Tensor randn_half(std::vector<int64_t> shape, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn(shape).to(at::kHalf);
}

/// A device copy of the CPU tensor T (fp16 as __half, fp32, int64).
template <typename D>
void upload(DevBuf<D>& d, const at::Tensor& t) {
  ASSERT_EQ(size_t(t.numel()), d.n);
  ASSERT_EQ(size_t(t.element_size()), sizeof(D));
  CUDA_CHECK(cudaMemcpy(d.p, t.contiguous().data_ptr(), d.n * sizeof(D), cudaMemcpyHostToDevice));
}
template <typename D>
at::Tensor download(const DevBuf<D>& d, std::vector<int64_t> shape, at::ScalarType type) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type));
  EXPECT_EQ(size_t(t.numel()), d.n);
  CUDA_CHECK(cudaMemcpy(t.data_ptr(), d.p, d.n * sizeof(D), cudaMemcpyDeviceToHost));
  return t;
}
/// Every byte 0xff: NaN as fp16 and fp32.
template <typename D>
void poison(DevBuf<D>& d) {
  CUDA_CHECK(cudaMemset(d.p, 0xff, d.n * sizeof(D)));
}

/// Equal value for value (compared as fp32: exact for fp16 and fp32 data).
bool same(const at::Tensor& a, const at::Tensor& b) { return at::equal(a.to(at::kFloat), b.to(at::kFloat)); }

/// max |got - ref| / (rel |ref| + abs): <= 1 passes; NaN (an unwritten value) fails.
double worst(const at::Tensor& got, const at::Tensor& ref, double rel, double abs) {
  const at::Tensor g = got.to(at::kDouble), r = ref.to(at::kDouble);
  return ((g - r).abs() / (r.abs() * rel + abs)).max().item<double>();
}
// one fp16 rounding apart (2^-11 relative each, so 2^-10 between two roundings)
constexpr double kHalfRel = 1e-3, kHalfAbs = 1e-6;

TEST(GenStepOps, RmsNormMatchesLibTorch) {
  SKIP_WITHOUT_GPU();
  for (int rows : {1, 5}) {
    for (int n : {384, 4096, 1000, 8192}) {
      const uint64_t seed = uint64_t(rows) * 100000 + n;
      SCOPED_TRACE(::testing::Message() << "seed " << seed << " rows " << rows << " n " << n);
      at::manual_seed(seed);
      const at::Tensor x = at::randn({rows, n}) * 3.0, w = at::rand({n}) + 0.5;
      const at::Tensor y = randn_half({rows, n}, seed + 1);
      const double eps = 1e-5;
      DevBuf<float> dx(size_t(rows) * n), dw(n);
      DevBuf<__half> dy(size_t(rows) * n), dh(size_t(rows) * n);
      upload(dx, x);
      upload(dw, w);
      upload(dy, y);
      poison(dh);
      ASSERT_EQ(gen_rmsnorm_launch(dx.p, dw.p, dh.p, rows, n, float(eps), nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const at::Tensor ref = rms_norm(x, w, eps).to(at::kHalf);  // gen_forward's norm_to
      EXPECT_LE(worst(download(dh, {rows, n}, at::kHalf), ref, kHalfRel, kHalfAbs), 1.0) << "rmsnorm";
      EXPECT_TRUE(at::equal(download(dx, {rows, n}, at::kFloat), x)) << "rmsnorm must not write x";

      poison(dh);
      ASSERT_EQ(gen_add_rmsnorm_launch(dx.p, dy.p, dw.p, dh.p, rows, n, float(eps), nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const at::Tensor x2 = x + y.to(at::kFloat);
      EXPECT_TRUE(at::equal(download(dx, {rows, n}, at::kFloat), x2)) << "residual add (exact in fp32)";
      EXPECT_LE(worst(download(dh, {rows, n}, at::kHalf), rms_norm(x2, w, eps).to(at::kHalf), kHalfRel, kHalfAbs), 1.0)
          << "add + rmsnorm";
    }
  }
}

struct AttnCase {
  int batch, heads, kv_heads, hd;
  int64_t max_len;
  std::vector<int64_t> positions;
};

/// GQA (rep 3), MQA (rep 4, rep 32), head dims 32, 64, 80 (a half-filled second lane
/// pair), 128; batch 1 and 5; positions 0, below and above the split count, max_len - 1.
std::vector<AttnCase> attn_cases() {
  return {
      {1, 6, 2, 64, 200, {0, 5, 12, 13, 100, 199}},
      {5, 6, 2, 64, 200, {0, 3, 57, 199}},
      {1, 4, 1, 128, 4096, {0, 63, 1000, 4095}},
      {5, 4, 1, 128, 300, {0, 1, 150, 299}},
      {2, 32, 1, 80, 97, {0, 40, 96}},
      {5, 6, 3, 32, 64, {0, 17, 63}},
  };
}

std::string case_name(const AttnCase& c, int64_t p) {
  return fmt::format("B {} H {} KV {} hd {} max_len {} p {}", c.batch, c.heads, c.kv_heads, c.hd, c.max_len, p);
}

/// x [.., hd] (fp32) rotated by one row of the tables, as gen_forward's rope_at.
at::Tensor rope_ref(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return x * cos + at::cat({-x2, x1}, -1) * sin;
}

TEST(GenStepOps, RopeKvWriteMatchesLibTorch) {
  SKIP_WITHOUT_GPU();
  for (const AttnCase& c : attn_cases()) {
    const int64_t B = c.batch, H = c.heads, KV = c.kv_heads, hd = c.hd, L = c.max_len;
    LlamaConfig cfg;
    cfg.head_dim = c.hd;
    cfg.rope_theta = 10000;
    const Rope rope = make_rope(cfg, L + 3, at::kCPU);  // the table may be longer than the cache
    DevBuf<float> dcos(size_t((L + 3) * hd)), dsin(size_t((L + 3) * hd));
    upload(dcos, rope.cos);
    upload(dsin, rope.sin);
    GenAttnShape s{c.batch, c.heads, c.kv_heads, c.hd, c.max_len};
    for (int64_t p : c.positions) {
      const uint64_t seed = uint64_t(1000 * hd + p);
      SCOPED_TRACE(::testing::Message() << case_name(c, p) << " seed " << seed);
      const at::Tensor q = randn_half({B, H * hd}, seed), k = randn_half({B, KV * hd}, seed + 1);
      const at::Tensor v = randn_half({B, KV * hd}, seed + 2);
      const at::Tensor kc0 = randn_half({B, KV, L, hd}, seed + 3), vc0 = randn_half({B, KV, L, hd}, seed + 4);
      DevBuf<__half> dq(B * H * hd), dk(B * KV * hd), dv(B * KV * hd), dqo(B * H * hd), dkc(B * KV * L * hd),
          dvc(B * KV * L * hd);
      DevBuf<int64_t> dpos(1);
      upload(dq, q);
      upload(dk, k);
      upload(dv, v);
      upload(dkc, kc0);
      upload(dvc, vc0);
      upload(dpos, at::full({1}, p, at::TensorOptions().dtype(at::kLong)));
      poison(dqo);
      ASSERT_EQ(gen_rope_kv_launch(s, dq.p, dk.p, dv.p, dcos.p, dsin.p, L + 3, dpos.p, dqo.p, dkc.p, dvc.p, nullptr),
                cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const at::Tensor cs = rope.cos[p], sn = rope.sin[p];
      const at::Tensor qr = rope_ref(q.to(at::kFloat).view({B, H, hd}), cs, sn).to(at::kHalf).view({B, H * hd});
      const at::Tensor kr = rope_ref(k.to(at::kFloat).view({B, KV, hd}), cs, sn).to(at::kHalf);
      EXPECT_LE(worst(download(dqo, {B, H * hd}, at::kHalf), qr, kHalfRel, kHalfAbs), 1.0) << "rotated q";
      const at::Tensor kc = download(dkc, {B, KV, L, hd}, at::kHalf), vc = download(dvc, {B, KV, L, hd}, at::kHalf);
      EXPECT_LE(worst(kc.select(2, p), kr, kHalfRel, kHalfAbs), 1.0) << "k written at p";
      EXPECT_TRUE(same(vc.select(2, p), v.view({B, KV, hd}))) << "v written at p as it is";
      // every other position untouched
      for (const auto& [got, before] : {std::make_pair(kc, kc0), std::make_pair(vc, vc0)}) {
        EXPECT_TRUE(same(got.narrow(2, 0, p), before.narrow(2, 0, p))) << "positions before p";
        EXPECT_TRUE(same(got.narrow(2, p + 1, L - p - 1), before.narrow(2, p + 1, L - p - 1)))
            << "positions after p";
      }
      // in place (q_out = q), as the step may run it
      ASSERT_EQ(gen_rope_kv_launch(s, dq.p, dk.p, dv.p, dcos.p, dsin.p, L + 3, dpos.p, dq.p, dkc.p, dvc.p, nullptr),
                cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      EXPECT_LE(worst(download(dq, {B, H * hd}, at::kHalf), qr, kHalfRel, kHalfAbs), 1.0) << "rotated q in place";
    }
  }
}

TEST(GenStepOps, AttentionMatchesDoubleReference) {
  SKIP_WITHOUT_GPU();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const AttnCase& c : attn_cases()) {
    const int64_t B = c.batch, H = c.heads, KV = c.kv_heads, hd = c.hd, L = c.max_len, rep = H / KV;
    GenAttnShape s{c.batch, c.heads, c.kv_heads, c.hd, c.max_len};
    for (int64_t p : c.positions) {
      const uint64_t seed = uint64_t(7000 * hd + p);
      SCOPED_TRACE(::testing::Message() << case_name(c, p) << " seed " << seed << " splits "
                                        << gen_attention_splits(s));
      const at::Tensor q = randn_half({B, H * hd}, seed);
      at::Tensor kc = randn_half({B, KV, L, hd}, seed + 1), vc = randn_half({B, KV, L, hd}, seed + 2);
      // positions past p are NaN: a kernel that reads one (even with weight 0) fails
      kc.narrow(2, p + 1, L - p - 1).fill_(nan);
      vc.narrow(2, p + 1, L - p - 1).fill_(nan);
      DevBuf<__half> dq(B * H * hd), dkc(B * KV * L * hd), dvc(B * KV * L * hd), dout(B * H * hd);
      DevBuf<float> ws(gen_attention_workspace_floats(s));
      DevBuf<int64_t> dpos(1);
      upload(dq, q);
      upload(dkc, kc);
      upload(dvc, vc);
      upload(dpos, at::full({1}, p, at::TensorOptions().dtype(at::kLong)));
      poison(dout);
      poison(ws);  // the workspace needs no initialisation
      ASSERT_EQ(gen_attention_launch(s, dq.p, dkc.p, dvc.p, dpos.p, ws.p, dout.p, nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      // the rep query heads of KV head g are heads g*rep .. g*rep+rep-1
      const at::Tensor K = kc.narrow(2, 0, p + 1).to(at::kDouble), V = vc.narrow(2, 0, p + 1).to(at::kDouble);
      const at::Tensor qg = q.to(at::kDouble).view({B, KV, rep, hd});
      const at::Tensor sc = at::matmul(qg, K.transpose(-1, -2)) / std::sqrt(double(hd));  // [B, KV, rep, p+1]
      const at::Tensor ref = at::matmul(at::softmax(sc, -1), V).reshape({B, H * hd});
      EXPECT_LE(worst(download(dout, {B, H * hd}, at::kHalf), ref, kHalfRel, 2e-4), 1.0) << "attention output";
    }
  }
}

TEST(GenStepOps, AttentionRejectsShapesItCannotRun) {
  SKIP_WITHOUT_GPU();
  const GenAttnShape wide{1, 4, 1, 136, 16}, uneven{1, 6, 4, 64, 16}, odd{1, 4, 1, 63, 16};
  for (const GenAttnShape& s : {wide, uneven, odd}) {
    EXPECT_EQ(gen_attention_launch(s, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr),
              cudaErrorInvalidValue);
    EXPECT_EQ(gen_rope_kv_launch(s, nullptr, nullptr, nullptr, nullptr, nullptr, 16, nullptr, nullptr, nullptr,
                                 nullptr, nullptr),
              cudaErrorInvalidValue);
  }
}

TEST(GenStepOps, SiluMulMatchesLibTorch) {
  SKIP_WITHOUT_GPU();
  for (int64_t count : {int64_t(1), int64_t(5 * 1001), int64_t(16 * 11008)}) {
    SCOPED_TRACE(::testing::Message() << "count " << count << " seed " << count);
    at::manual_seed(uint64_t(count));
    const at::Tensor g = (at::randn({count}) * 4).to(at::kHalf), u = at::randn({count}).to(at::kHalf);
    DevBuf<__half> dg(count), du(count), da(count);
    upload(dg, g);
    upload(du, u);
    poison(da);
    ASSERT_EQ(gen_silu_mul_launch(dg.p, du.p, da.p, count, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const at::Tensor ref = (at::silu(g.to(at::kFloat)) * u.to(at::kFloat)).to(at::kHalf);  // gen_forward's
    EXPECT_LE(worst(download(da, {count}, at::kHalf), ref, kHalfRel, kHalfAbs), 1.0);
  }
}

#ifdef GLVQ_WITH_TORCH_CUDA
const char* kModel = GLVQ_SOURCE_DIR "/models/tiny-llama";

/// tiny-llama's dense weights as the CUDA decoder holds them (fp16 linears, fp32 norms).
GenWeights tiny_weights() {
  ModelFiles files(kModel);
  const at::Device dev(at::kCUDA, 0);
  GenWeights w;
  w.cfg = load_llama_config(kModel);
  w.device = dev;
  w.act = at::kHalf;
  const HeadWeights head = load_head(files, w.cfg, true, true, at::kCPU);
  w.embed = head.embed.to(dev, at::kHalf);
  w.norm = head.norm.to(dev);
  w.lm_head = head.lm_head.to(dev, at::kHalf);
  for (int b = 0; b < w.cfg.n_layers; ++b) {
    const BlockWeights bw = load_block(files, w.cfg, b, at::kCPU);
    GenBlock blk;
    blk.input_norm = bw.input_norm.to(dev);
    blk.post_norm = bw.post_norm.to(dev);
    for (int l = 0; l < kNumLinears; ++l) blk.lin[l] = std::make_unique<DenseLinear>(bw.w[l].to(dev, at::kHalf));
    w.blocks.push_back(std::move(blk));
  }
  w.rope = make_rope(w.cfg, w.cfg.max_positions, dev);
  return w;
}

double max_rel(const at::Tensor& got, const at::Tensor& ref) {
  return (got - ref).abs().max().item<double>() / std::max(1e-6, ref.abs().max().item<double>());
}
#endif

TEST(GenStepOps, FusedStepMatchesGenForward) {
#ifndef GLVQ_WITH_TORCH_CUDA
  GTEST_SKIP() << "built without the CUDA decoder";
#else
  SKIP_WITHOUT_GPU();
  c10::NoGradGuard ng;
  const GenWeights w = tiny_weights();
  ASSERT_TRUE(cuda_decode_step_fused(w)) << "tiny-llama (hd 64, fp16) must take the fused path";
  const at::Device dev(at::kCUDA, 0);
  const auto lopt = at::TensorOptions().dtype(at::kLong).device(dev);
  // two sequences of 24 prompt tokens, 32 steps, and a cache longer than that (masked tail)
  const int64_t B = 2, T = 24, steps = 32, max_len = T + steps + 9;
  at::manual_seed(3);
  const at::Tensor prompt = at::randint(3, w.cfg.vocab, {B, T}, lopt);
  KvCache ref, fused;
  ref.reset(w, B, max_len);
  fused.reset(w, B, max_len);
  at::Tensor last = gen_forward(w, ref, prompt, at::arange(T, lopt), T, false);
  for (size_t i = 0; i < ref.k.size(); ++i) {
    fused.k[i].copy_(ref.k[i]);
    fused.v[i].copy_(ref.v[i]);
  }
  const double tol = 1e-2;
  int decisive = 0, agree = 0;
  for (int64_t step = 0; step < steps; ++step) {
    const at::Tensor tok = last.argmax(-1, true);  // [B, 1], the reference's greedy choice fed to both
    const at::Tensor qpos = at::full({1}, T + step, lopt);
    const at::Tensor lr = gen_forward(w, ref, tok, qpos, ref.max_len, false);
    const at::Tensor lf = cuda_decode_step(w, fused, tok, qpos);
    ASSERT_EQ(lf.sizes(), lr.sizes());
    ASSERT_EQ(lf.scalar_type(), at::kFloat);
    EXPECT_LE(max_rel(lf, lr), tol) << "decode step " << step;
    for (int64_t b = 0; b < B; ++b) {
      const auto top2 = lr[b].topk(2);
      const double margin = (std::get<0>(top2)[0] - std::get<0>(top2)[1]).item<double>();
      if (margin > 4 * tol * lr[b].abs().max().item<double>()) {
        ++decisive;
        agree += lf[b].argmax().item<int64_t>() == lr[b].argmax().item<int64_t>();
      }
    }
    last = lr;
  }
  EXPECT_EQ(agree, decisive) << "greedy tokens with a clear margin must agree";
  EXPECT_GE(decisive, steps) << "too few clear choices to tell anything";
  for (size_t i = 0; i < ref.k.size(); ++i) {
    EXPECT_LE(max_rel(fused.k[i], ref.k[i]), tol) << "K cache of block " << i;
    EXPECT_LE(max_rel(fused.v[i], ref.v[i]), tol) << "V cache of block " << i;
  }
#endif
}

}  // namespace
}  // namespace glvq
