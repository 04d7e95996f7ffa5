// The shaped code's fused decode-GEMV (kernels/glvq_gemv_shaped.cu) against the CPU
// reference: y = W_hat x with W_hat from glvq_decode_ref, on layers of random codes (every
// byte string is a valid shaped code), every width 1..8, d = 8..64, narrower and padded
// last groups, odd row counts (codes not 4-byte aligned), batches 1..16 and several K
// splits, each twice (the split-K workspace must be clean again after a call).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "glvq_gemv.cuh"
#include "glvq_gemv_shaped.cuh"
#include "glvq_test_util.h"

namespace glvq {
namespace {

using test::DevBuf;

/// A shaped layer of random codes; its W is the reference decode W_hat (not a weight it was
/// encoded from).
test::Layer make_shaped(uint32_t seed, GlvqLayout L, const std::vector<uint8_t>& widths) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> us(0.01f, 0.05f);
  test::Layer y;
  L.code = GlvqCode::shaped;
  y.L = L;
  const int d = L.dim;
  for (int64_t g = 0; g < L.groups(); ++g) {
    y.bits.push_back(widths[(g + seed) % widths.size()]);
    y.scale.push_back(us(rng));
    y.mu.push_back(0.0f);
    std::vector<float> G(size_t(d) * d);
    for (int i = 0; i < d; ++i)
      for (int j = 0; j < d; ++j) G[i * d + j] = (i == j ? 1.0f : 0.0f) + 0.2f * nd(rng);
    const std::vector<float> Gi = test::invert(G, d);
    y.G.insert(y.G.end(), G.begin(), G.end());
    y.Ginv.insert(y.Ginv.end(), Gi.begin(), Gi.end());
  }
  y.off = glvq_group_offsets(L, y.bits.data());
  std::uniform_int_distribution<int> byte(0, 255);
  y.codes.resize(size_t(y.off.back()));
  for (auto& c : y.codes) c = uint8_t(byte(rng));
  y.W.resize(size_t(L.out) * L.in);
  glvq_decode_ref(L, y.view(), y.codes.data(), y.W.data());
  return y;
}

struct Case {
  GlvqLayout L;
  std::vector<uint8_t> widths;
  std::vector<int> batches;
};

TEST(GlvqShapedGemvGpu, MatchesTheReferenceDecode) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::vector<Case> cases = {
      {{3, 128, 8, 128}, {2}, {1, 2}},                     // one chunk, out < 16
      {{37, 256, 8, 128}, {2, 1, 3}, {1, 5, 9}},           // odd rows: unaligned group offsets
      {{64, 512, 8, 128}, {2, 4, 1, 3}, {1, 16}},          // 1..4 bits, batch 16
      {{40, 384, 32, 0}, {2, 3}, {1, 8}},                  // d = 32, one group per row
      {{33, 688, 8, 128}, {2, 3, 1}, {1, 4}},              // 5 x 128 + 48: a chunk of 6 sub-codes
      {{17, 100, 32, 128}, {3, 2}, {1, 3}},                // one group of 100: a padded vector of 32
      {{24, 200, 16, 64}, {5, 8, 2}, {1, 2}},              // d = 16, wide codes, last group 8
      {{16, 192, 64, 64}, {6, 7, 1}, {1}},                 // d = 64
      {{48, 96, 8, 32}, {2, 1}, {1, 11}},                  // gs 32: 4 sub-codes a chunk
      {{1024, 4096, 8, 128}, {2, 1, 3, 2}, {1, 4}},        // many splits
      {{9, 272, 8, 136}, {1, 3}, {1, 3}},                  // 17 sub-codes a row: full chunks read byte by byte
  };
  uint32_t seed = 9100;
  for (Case cs : cases) {
    if (cs.L.group_size == 0) cs.L.group_size = int(cs.L.in);
    const test::Layer y = make_shaped(seed++, cs.L, cs.widths);
    const GlvqLayout& L = y.L;
    ASSERT_EQ(glvq_gemv_shaped_unsupported(L, y.bits.data(), y.mu.data()), "");
    test::DevLayer dl(y);
    DevBuf<int32_t> chunks(glvq_shaped_gemv_chunks(L, y.bits.data(), y.off.data()));
    const GlvqDeviceParams p = dl.params();
    GlvqShapedDevice M;
    M.L = L;
    M.codes = dl.codes.p;
    M.chunks = chunks.p;
    M.nchunks = int64_t(chunks.n / 4);
    DevBuf<int32_t> work(glvq_shaped_gemv_work(L, y.bits.data(), y.off.data()));
    M.work = work.p;
    DevBuf<char> wsb(glvq_gemv_workspace_bytes(L, 16));
    GlvqGemvWorkspace ws;
    CUDA_CHECK(glvq_gemv_workspace_init(L, 16, wsb.p, &ws, nullptr));
    for (int batch : cs.batches) {
      const std::vector<float> x = test::random_x(seed++, size_t(batch) * L.in);
      DevBuf<__half> xd(test::to_half(x));
      const int64_t ldy = L.out + 3;
      DevBuf<__half> yd(size_t(batch) * ldy);
      // y_ref = W_hat x in double; the bound counts fp16 rounding of the transformed
      // activation and of multi-stage codewords (2^-11 of each term) and of the output
      std::vector<double> ref(size_t(batch) * L.out), mag(ref.size());
      for (int n = 0; n < batch; ++n)
        for (int64_t r = 0; r < L.out; ++r) {
          double s = 0, m = 0;
          for (int64_t c = 0; c < L.in; ++c) {
            const double t = double(y.W[r * L.in + c]) * x[n * L.in + c];
            s += t;
            m += std::fabs(t);
          }
          ref[n * L.out + r] = s;
          mag[n * L.out + r] = m;
        }
      // versions 1 (the default) and 2; version 2 with the layer's widest bits, and with 8
      // (its variant for wide codes, which every layer may take)
      const int widest = glvq_shaped_max_bits(L, y.bits.data());
      const std::pair<GlvqShapedTuning, int> runs[] = {
          {GlvqShapedTuning{}, widest},           {GlvqShapedTuning{1, 48, false}, widest},
          {GlvqShapedTuning{3, 48, true}, widest},  {GlvqShapedTuning{0, 8, true}, widest},
          {GlvqShapedTuning{0, 48, true, 2}, widest}, {GlvqShapedTuning{1, 48, false, 2}, widest},
          {GlvqShapedTuning{3, 48, true, 2}, widest}, {GlvqShapedTuning{0, 48, true, 2}, 8},
          {GlvqShapedTuning{3, 48, true, 2}, 8}};
      for (const auto& [tune, max_bits] : runs) {
        M.max_bits = max_bits;
        SCOPED_TRACE(testing::Message() << "seed " << seed << " out " << L.out << " in " << L.in << " d " << L.dim
                                        << " gs " << L.group_size << " batch " << batch << " splits "
                                        << tune.splits << " warps/sm " << tune.warps_per_sm << " version " << tune.version
                                        << " max_bits " << M.max_bits);
        for (int rep = 0; rep < 2; ++rep) {
          CUDA_CHECK(cudaMemset(yd.p, 0xFF, yd.n * 2));  // NaN: an unwritten output fails
          CUDA_CHECK(glvq_gemv_shaped_launch(M, p, xd.p, L.in, yd.p, ldy, batch, ws, nullptr, tune));
          CUDA_CHECK(cudaDeviceSynchronize());
          const std::vector<__half> got = yd.download();
          double worst = 0;
          bool finite = true;
          for (int n = 0; n < batch; ++n)
            for (int64_t r = 0; r < L.out; ++r) {
              const float v = __half2float(got[n * ldy + r]);
              finite = finite && std::isfinite(v);
              const double e = ref[n * L.out + r];
              worst = std::max(worst, std::fabs(v - e) / (mag[n * L.out + r] + std::fabs(e) + 1e-30));
            }
          EXPECT_TRUE(finite) << "rep " << rep;
          EXPECT_LT(worst, 2e-3) << "rep " << rep;
        }
      }
    }
  }
}

TEST(GlvqShapedGemvGpu, RefusesWhatItCannotRun) {
  GlvqLayout L{16, 128, 8, 128};
  const std::vector<uint8_t> bits = {2};
  const std::vector<float> mu0 = {0.0f}, mu1 = {10.0f};
  EXPECT_NE(glvq_gemv_shaped_unsupported(L, bits.data(), mu0.data()), "");  // box code
  L.code = GlvqCode::shaped;
  EXPECT_EQ(glvq_gemv_shaped_unsupported(L, bits.data(), mu0.data()), "");
  EXPECT_NE(glvq_gemv_shaped_unsupported(L, bits.data(), mu1.data()), "");  // companding
}

}  // namespace
}  // namespace glvq
