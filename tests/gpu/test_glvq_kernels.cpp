// GLVQ CUDA kernels against the CPU reference (quant/glvq_codec.h): encode bit for bit,
// decode exactly (float) or within 1 ulp (fp16/bf16), the fused GEMVs within a bound
// that counts fp16 rounding. Outputs are poisoned first so unwritten elements fail.
#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cstdio>

#include "glvq_decode.cuh"
#include "glvq_encode.cuh"
#include "glvq_gemv.cuh"
#include "glvq_test_util.h"

namespace glvq {
namespace {

using test::DevBuf;
using test::DevLayer;
using test::Layer;

#define SKIP_WITHOUT_GPU() \
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device"

struct Case {
  GlvqLayout L;
  std::vector<uint8_t> bits;
  std::vector<float> mu;
};

/// Odd shapes, d = 4, 5 (generic path), 8, 16, 32, bits 1..8, companding on and off.
std::vector<Case> codec_cases() {
  return {
      {{37, 96, 8, 32}, {1, 2, 3}, {0.0f, 255.0f, 10.0f}},
      {{16, 256, 32, 128}, {2, 3}, {255.0f, 0.0f}},
      {{5, 48, 4, 16}, {4, 1, 3}, {0.0f, 30.0f}},
      {{9, 128, 16, 64}, {2}, {50.0f}},
      {{7, 60, 5, 20}, {3, 2, 1}, {0.0f, 30.0f, 255.0f}},
      {{11, 64, 8, 64}, {8}, {100.0f}},
      {{300, 512, 8, 128}, {2, 4, 1, 3}, {0.0f, 200.0f}},
      // a narrower last group (quant/glvq_codec.h): real Llama widths, a padded last vector
      {{13, 688, 8, 128}, {2, 3, 1, 4}, {0.0f, 40.0f}},   // 5 x 128 + 48
      {{6, 688, 32, 128}, {3, 2}, {0.0f}},                // last group: one vector of 32, one of 16
      {{9, 960, 32, 128}, {2, 4}, {30.0f, 0.0f}},         // 7 x 128 + 64
      {{4, 8640, 8, 128}, {2}, {0.0f}},                   // 67 x 128 + 64
      {{7, 100, 8, 32}, {1, 2, 3, 4}, {0.0f, 20.0f}},     // 3 x 32 + 4: one padded vector per row
      {{5, 100, 32, 128}, {3}, {0.0f}},                   // one group of 100 = 3 x 32 + 4
      {{3, 5, 8, 8}, {2}, {10.0f}},                       // a single padded vector
      {{7, 63, 5, 20}, {3, 2, 1, 4}, {0.0f, 30.0f}},      // generic d: groups 20, 20, 20, 3
  };
}

TEST(GlvqGpu, EncodeIsBitExact) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 7000;
  std::vector<Case> cases = codec_cases();
  for (const Case& cs : cases) {
    SCOPED_TRACE(testing::Message() << "seed " << seed << " out " << cs.L.out << " in " << cs.L.in << " d "
                                    << cs.L.dim);
    const Layer y = test::make_layer(seed++, cs.L, cs.bits, cs.mu);
    DevLayer dl(y);
    const int64_t ldw = cs.L.in + 3;  // a row stride that is not the width
    std::vector<float> Wpad(size_t(cs.L.out) * ldw, 0.0f);
    for (int64_t r = 0; r < cs.L.out; ++r)
      for (int64_t c = 0; c < cs.L.in; ++c) Wpad[r * ldw + c] = y.W[r * cs.L.in + c];
    DevBuf<float> W(Wpad);
    DevBuf<uint8_t> codes(y.codes.size());
    CUDA_CHECK(cudaMemset(codes.p, 0xA5, codes.n));
    CUDA_CHECK(glvq_encode_launch(cs.L, dl.params(), W.p, ldw, codes.p, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<uint8_t> got = codes.download();
    int64_t bad = 0, first = -1;
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != y.codes[i] && bad++ == 0) first = int64_t(i);
    EXPECT_EQ(bad, 0) << "first differing byte " << first << " of " << got.size();
  }
}

TEST(GlvqGpu, EncodeTiesAndClampingAreBitExact) {
  SKIP_WITHOUT_GPU();
  // G = 0.25 I, s = 0.5, mu = 0 and weights on multiples of 1/8: y = w / 0.125 lands on
  // integers (ties of the Babai rounding) and far outside the range (clamping).
  GlvqLayout L{8, 64, 8, 64};
  Layer y;
  y.L = L;
  y.bits = {3};
  y.scale = {0.5f};
  y.mu = {0.0f};
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) {
      y.G.push_back(i == j ? 0.25f : 0.0f);
      y.Ginv.push_back(i == j ? 4.0f : 0.0f);
    }
  std::mt19937 rng(7100);
  std::uniform_int_distribution<int> k(-40, 40);
  y.W.resize(size_t(L.out) * L.in);
  for (auto& w : y.W) w = 0.125f * float(k(rng));
  y.off = glvq_group_offsets(L, y.bits.data());
  y.codes.assign(y.off.back(), 0);
  glvq_encode_ref(L, y.view(), y.W.data(), y.codes.data());
  DevLayer dl(y);
  DevBuf<float> W(y.W);
  DevBuf<uint8_t> codes(y.codes.size());
  CUDA_CHECK(glvq_encode_launch(L, dl.params(), W.p, L.in, codes.p, nullptr));
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(codes.download(), y.codes);
}

template <typename T>
uint16_t bits16(T v) {
  uint16_t b;
  std::memcpy(&b, &v, 2);
  return b;
}
/// Distance in ulps between two 16-bit floats of the same format (sign-magnitude order).
int ulp_distance(uint16_t a, uint16_t b) {
  auto key = [](uint16_t v) { return (v & 0x8000) ? -int(v & 0x7fff) : int(v); };
  return std::abs(key(a) - key(b));
}

TEST(GlvqGpu, DecodeMatchesReference) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 7200;
  for (const Case& cs : codec_cases()) {
    SCOPED_TRACE(testing::Message() << "seed " << seed << " out " << cs.L.out << " in " << cs.L.in << " d "
                                    << cs.L.dim);
    const Layer y = test::make_layer(seed++, cs.L, cs.bits, cs.mu);
    const GlvqLayout& L = cs.L;
    std::vector<float> ref(size_t(L.out) * L.in);
    glvq_decode_ref(L, y.view(), y.codes.data(), ref.data());
    DevLayer dl(y);
    const int64_t ld = L.in + 8;
    // float: bit-identical
    {
      DevBuf<float> W(size_t(L.out) * ld);
      CUDA_CHECK(cudaMemset(W.p, 0xFF, W.n * sizeof(float)));  // NaN poison
      CUDA_CHECK(glvq_decode_launch(L, dl.params(), dl.codes.p, W.p, ld, nullptr));
      CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<float> got = W.download();
      int64_t bad = 0;
      for (int64_t r = 0; r < L.out; ++r)
        for (int64_t c = 0; c < L.in; ++c)
          if (std::memcmp(&got[r * ld + c], &ref[r * L.in + c], 4) != 0 && bad++ < 3)
            ADD_FAILURE() << "float r=" << r << " c=" << c << " got " << got[r * ld + c] << " ref "
                          << ref[r * L.in + c];
      EXPECT_EQ(bad, 0);
    }
    // fp16 and bf16: within 1 ulp of the reference rounded to the type
    {
      DevBuf<__half> W(size_t(L.out) * ld);
      CUDA_CHECK(cudaMemset(W.p, 0xFF, W.n * 2));
      CUDA_CHECK(glvq_decode_launch(L, dl.params(), dl.codes.p, W.p, ld, nullptr));
      DevBuf<__nv_bfloat16> B(size_t(L.out) * ld);
      CUDA_CHECK(cudaMemset(B.p, 0xFF, B.n * 2));
      CUDA_CHECK(glvq_decode_launch(L, dl.params(), dl.codes.p, B.p, ld, nullptr));
      CUDA_CHECK(cudaDeviceSynchronize());
      const std::vector<__half> gh = W.download();
      const std::vector<__nv_bfloat16> gb = B.download();
      int worst_h = 0, worst_b = 0;
      for (int64_t r = 0; r < L.out; ++r)
        for (int64_t c = 0; c < L.in; ++c) {
          const float v = ref[r * L.in + c];
          worst_h = std::max(worst_h, ulp_distance(bits16(gh[r * ld + c]), bits16(__float2half_rn(v))));
          worst_b = std::max(worst_b, ulp_distance(bits16(gb[r * ld + c]), bits16(__float2bfloat16_rn(v))));
        }
      EXPECT_LE(worst_h, 1);
      EXPECT_LE(worst_b, 1);
    }
  }
}

/// glvq_gemv_ref per batch column, and sum_c |W_hat[r, c] x[n, c]| to scale the bound.
struct GemvRef {
  std::vector<float> y;
  std::vector<double> mag;
};
GemvRef gemv_ref(const Layer& y, const std::vector<float>& x, int batch) {
  const GlvqLayout& L = y.L;
  std::vector<float> Wh(size_t(L.out) * L.in);
  glvq_decode_ref(L, y.view(), y.codes.data(), Wh.data());
  GemvRef R;
  R.y.resize(size_t(batch) * L.out);
  R.mag.resize(size_t(batch) * L.out);
  for (int n = 0; n < batch; ++n) {
    glvq_gemv_ref(L, y.view(), y.codes.data(), x.data() + n * L.in, R.y.data() + n * L.out);
    for (int64_t r = 0; r < L.out; ++r) {
      double mag = 0;
      for (int64_t c = 0; c < L.in; ++c) mag += std::fabs(double(Wh[r * L.in + c]) * x[n * L.in + c]);
      R.mag[n * L.out + r] = mag;
    }
  }
  return R;
}

/// max over outputs of |y - ref| / (sum_c |W_hat x| + |ref|), and whether every y is finite.
struct GemvError {
  double worst = 0;
  bool finite = true;
};
GemvError gemv_error(const GemvRef& R, int64_t out, int batch, const std::vector<__half>& got, int64_t ldy) {
  GemvError e;
  for (int n = 0; n < batch; ++n)
    for (int64_t r = 0; r < out; ++r) {
      const float v = __half2float(got[n * ldy + r]);
      const double ref = R.y[n * out + r];
      if (!std::isfinite(v)) e.finite = false;
      e.worst = std::max(e.worst, std::fabs(double(v) - ref) / (R.mag[n * out + r] + std::fabs(ref) + 1e-30));
    }
  return e;
}

using test::random_x;
using test::to_half;

TEST(GlvqGpu, GemvNaiveMatchesReference) {
  SKIP_WITHOUT_GPU();
  uint32_t seed = 7300;
  for (const Case& cs : codec_cases()) {
    for (int batch : {1, 3, 16}) {
      SCOPED_TRACE(testing::Message() << "seed " << seed << " out " << cs.L.out << " in " << cs.L.in << " d "
                                      << cs.L.dim << " batch " << batch);
      const Layer y = test::make_layer(seed++, cs.L, cs.bits, cs.mu);
      const GlvqLayout& L = cs.L;
      DevLayer dl(y);
      const std::vector<float> x = random_x(seed++, size_t(batch) * L.in);
      DevBuf<__half> xd(to_half(x));
      const int64_t ldy = L.out + 5;
      DevBuf<__half> yd(size_t(batch) * ldy);
      DevBuf<char> wsb(glvq_gemv_workspace_bytes(L, 16));
      GlvqGemvWorkspace ws;
      CUDA_CHECK(glvq_gemv_workspace_init(L, 16, wsb.p, &ws, nullptr));
      const GemvRef R = gemv_ref(y, x, batch);
      for (int rep = 0; rep < 2; ++rep) {  // the workspace must be clean again after a call
        CUDA_CHECK(cudaMemset(yd.p, 0xFF, yd.n * 2));
        CUDA_CHECK(glvq_gemv_naive_launch(L, dl.params(), dl.codes.p, xd.p, L.in, yd.p, ldy, batch, ws, nullptr));
        CUDA_CHECK(cudaDeviceSynchronize());
        const GemvError e = gemv_error(R, L.out, batch, yd.download(), ldy);
        EXPECT_TRUE(e.finite);
        EXPECT_LT(e.worst, 2e-3) << "rep " << rep;
      }
    }
  }
}

struct MmaCase {
  GlvqLayout L;
  std::vector<uint8_t> bits;
  std::vector<int> batches;
};

TEST(GlvqGpu, GemvMmaMatchesReference) {
  SKIP_WITHOUT_GPU();
  const std::vector<MmaCase> cases = {
      {{3, 48, 8, 16}, {1, 3, 2}, {1, 2}},                // out < 16, kt = 1
      {{37, 256, 8, 128}, {2}, {1, 5, 9}},                // kt = 8, row padding
      {{100, 384, 32, 128}, {3}, {1, 8, 16}},             // d = 32
      {{20, 192, 32, 64}, {3, 1, 4}, {1, 3}},             // kt = 4
      {{16, 96, 4, 32}, {4, 2, 1}, {16}},                 // kt = 2, d = 4
      {{64, 512, 16, 256}, {2, 3}, {1, 12}},              // d = 16, gs 256
      {{33, 480, 16, 96}, {5, 6, 7, 8, 2}, {1}},          // wide codes
      {{1024, 4096, 8, 128}, {2}, {1, 16}},               // many splits
      {{512, 2048, 8, 128}, {1, 2, 3, 2}, {1, 4}},        // mixed bits, unroll pairs and singles
  };
  uint32_t seed = 7400;
  for (const MmaCase& cs : cases) {
    const GlvqLayout& L = cs.L;
    const Layer y = test::make_layer(seed++, L, cs.bits, {0.0f});
    DevLayer dl(y);
    const GlvqMmaPlan P = glvq_mma_plan(L.out, L.in, L.dim, L.group_size, y.bits.data());
    std::vector<uint8_t> packed(P.bytes());
    glvq_mma_repack(P, y.bits.data(), y.codes.data(), packed.data());
    DevBuf<uint8_t> pk(packed), cb(P.chunk_bits);
    DevBuf<int64_t> co(P.chunk_offsets);
    const GlvqMmaDevice M = glvq_mma_device(P, pk.p, co.p, cb.p);
    DevBuf<char> wsb(glvq_gemv_workspace_bytes(L, 16));
    GlvqGemvWorkspace ws;
    CUDA_CHECK(glvq_gemv_workspace_init(L, 16, wsb.p, &ws, nullptr));
    const std::vector<float> zemu = test::emulate_unpack(P, packed);
    for (int batch : cs.batches) {
      const std::vector<float> x = random_x(seed++, size_t(batch) * L.in);
      DevBuf<__half> xd(to_half(x));
      const int64_t ldy = L.out + 3;
      DevBuf<__half> yd(size_t(batch) * ldy);
      // the transformed activation the kernel used, checked against the host's, then
      // the exact sum over the kernel's own operands (z and that xt) for a tight bound
      CUDA_CHECK(glvq_gemv_mma_launch(M, dl.params(), xd.p, L.in, yd.p, ldy, batch, ws, nullptr));
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<__half> xtd(size_t(batch) * L.in);
      CUDA_CHECK(cudaMemcpy(xtd.data(), ws.xt, xtd.size() * 2, cudaMemcpyDeviceToHost));
      const std::vector<float> xth = test::transformed_x(y, x, batch);
      std::vector<float> xt_used(xth.size());
      int worst_ulp = 0;
      for (int n = 0; n < batch; ++n)
        for (int64_t c = 0; c < L.in; ++c) {
          const __half h = xtd[n * L.in + mma::xt_pos(c)];
          xt_used[n * L.in + c] = __half2float(h);
          worst_ulp = std::max(worst_ulp, ulp_distance(bits16(h), test::half_bits(xth[n * L.in + c])));
        }
      EXPECT_LE(worst_ulp, 1) << "xt vs host, batch " << batch;
      const std::vector<double> yemu = test::emulate_gemv(P, zemu, xt_used, batch);
      const GemvRef R = gemv_ref(y, x, batch);
      // splits, unroll, launch, and codes as subnormals or with the 1024 offset
      for (GlvqGemvTuning tune :
           {GlvqGemvTuning{}, GlvqGemvTuning{1, 32, 2, false}, GlvqGemvTuning{3, 32, 1, true, false},
            GlvqGemvTuning{0, 64, 2, true, false}, GlvqGemvTuning{2, 64, 2, true, true},
            GlvqGemvTuning{0, 16, 1, false, false}, GlvqGemvTuning{0, 64, 1, true, true}}) {
        SCOPED_TRACE(testing::Message() << "seed " << seed << " out " << L.out << " in " << L.in << " d " << L.dim
                                        << " gs " << L.group_size << " batch " << batch << " splits " << tune.splits
                                        << " unroll " << tune.unroll << " pdl " << tune.pdl << " subnormal "
                                        << tune.subnormal);
        for (int rep = 0; rep < 2; ++rep) {
          CUDA_CHECK(cudaMemset(yd.p, 0xFF, yd.n * 2));
          CUDA_CHECK(glvq_gemv_mma_launch(M, dl.params(), xd.p, L.in, yd.p, ldy, batch, ws, nullptr, tune));
          CUDA_CHECK(cudaDeviceSynchronize());
          const std::vector<__half> got = yd.download();
          const GemvError e = gemv_error(R, L.out, batch, got, ldy);
          EXPECT_TRUE(e.finite);
          EXPECT_LT(e.worst, 2e-3) << "rep " << rep;
          // against the emulation: only fp32 accumulation order and the fp16 output differ
          double worst = 0;
          for (int n = 0; n < batch; ++n)
            for (int64_t r = 0; r < L.out; ++r) {
              const double ref = yemu[n * L.out + r];
              worst = std::max(worst, std::fabs(__half2float(got[n * ldy + r]) - ref) /
                                          (std::fabs(ref) * 0x1p-11 + 1e-4));
            }
          EXPECT_LT(worst, 1.01) << "vs emulation, in units of fp16 rounding";
        }
      }
    }
  }
}

TEST(GlvqGpu, GemvMmaWithNarrowTailMatchesReference) {
  // The fast path for a layer whose last group is narrower: the mma GEMV over the full
  // groups (their codes are a prefix of the layer's), then the tail group added by
  // glvq_gemv_tail_launch; together they must match the reference GEMV of the layer.
  SKIP_WITHOUT_GPU();
  const std::vector<MmaCase> cases = {
      {{37, 688, 8, 128}, {2, 3}, {1, 5}},
      {{20, 960, 32, 128}, {3, 1}, {1, 16}},
      {{64, 8640, 8, 128}, {2}, {1, 4}},
      {{16, 100, 8, 32}, {2, 4}, {1, 3}},  // tail of 4 columns: one padded vector per row
  };
  uint32_t seed = 7500;
  for (const MmaCase& cs : cases) {
    const GlvqLayout& L = cs.L;
    const Layer y = test::make_layer(seed++, L, cs.bits, {0.0f});
    DevLayer dl(y);
    const int64_t in_full = (L.groups() - 1) * L.group_size;
    const GlvqMmaPlan P = glvq_mma_plan(L.out, in_full, L.dim, L.group_size, y.bits.data());
    std::vector<uint8_t> packed(P.bytes());
    glvq_mma_repack(P, y.bits.data(), y.codes.data(), packed.data());
    DevBuf<uint8_t> pk(packed), cb(P.chunk_bits);
    DevBuf<int64_t> co(P.chunk_offsets);
    const GlvqMmaDevice M = glvq_mma_device(P, pk.p, co.p, cb.p);
    DevBuf<char> wsb(glvq_gemv_workspace_bytes(L, 16));
    GlvqGemvWorkspace ws;
    CUDA_CHECK(glvq_gemv_workspace_init(L, 16, wsb.p, &ws, nullptr));
    for (int batch : cs.batches) {
      SCOPED_TRACE(testing::Message() << "seed " << seed << " out " << L.out << " in " << L.in << " d " << L.dim
                                      << " batch " << batch);
      const std::vector<float> x = random_x(seed++, size_t(batch) * L.in);
      DevBuf<__half> xd(to_half(x));
      const int64_t ldy = L.out + 3;
      DevBuf<__half> yd(size_t(batch) * ldy);
      const GemvRef R = gemv_ref(y, x, batch);
      for (int rep = 0; rep < 2; ++rep) {
        CUDA_CHECK(cudaMemset(yd.p, 0xFF, yd.n * 2));
        CUDA_CHECK(glvq_gemv_mma_launch(M, dl.params(), xd.p, L.in, yd.p, ldy, batch, ws, nullptr));
        CUDA_CHECK(glvq_gemv_tail_launch(L, dl.params(), dl.codes.p, xd.p, L.in, yd.p, ldy, batch, ws, nullptr));
        CUDA_CHECK(cudaDeviceSynchronize());
        const GemvError e = gemv_error(R, L.out, batch, yd.download(), ldy);
        EXPECT_TRUE(e.finite);
        EXPECT_LT(e.worst, 2e-3) << "rep " << rep;
      }
    }
  }
  // A layer without a narrower group has no tail to add.
  const GlvqLayout full{16, 256, 8, 128};
  GlvqGemvWorkspace ws;
  ws.max_batch = 1;
  EXPECT_EQ(glvq_gemv_tail_launch(full, GlvqDeviceParams{}, nullptr, nullptr, 256, nullptr, 16, 1, ws, nullptr),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace glvq
