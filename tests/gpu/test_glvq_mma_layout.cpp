// The mma layout (kernels/glvq_mma_layout.h) on the host: the repacked bytes, read
// back lane by lane as the kernel reads them, give the checkpoint's codes, and the
// emulated tensor-core GEMV equals glvq_gemv_ref. Needs no GPU.
#include <gtest/gtest.h>

#include <set>

#include "glvq_test_util.h"

namespace glvq {
namespace {

using test::Layer;

TEST(GlvqMmaLayout, WordOffsetsTileTheBlock) {
  for (int W = 1; W <= 16; ++W) {
    std::set<int> seen;
    for (int lane = 0; lane < 32; ++lane)
      for (int j = 0; j < W; ++j) {
        const int o = mma::word_offset(j, W, lane);
        EXPECT_EQ(o % 4, 0);
        EXPECT_TRUE(seen.insert(o).second) << "W=" << W << " lane " << lane << " word " << j;
        EXPECT_LT(o, W * 128);
      }
    EXPECT_EQ(int(seen.size()), 32 * W);
  }
}

TEST(GlvqMmaLayout, RegisterPlacementIsOneToOneAndClassAligned) {
  // Every register of a chunk has its own (word, slot); after its word's shift the field
  // of each register of a tile sits at the tile's class position, inside the fp16
  // mantissa, so one AND makes the subnormal the kernel feeds the tensor cores.
  for (int b = 1; b <= 8; ++b)
    for (int kt : {1, 2, 4, 8}) {
      SCOPED_TRACE(testing::Message() << "b " << b << " kt " << kt);
      const int W = mma::words(b, kt), S = mma::slots(b);
      EXPECT_GE(W * S, 4 * kt);
      if (kt == 8 || !mma::paired(b)) EXPECT_LE(W, (4 * kt + S - 1) / S + 1);  // at most one word above the minimum
      std::set<int> seen;
      for (int r = 0; r < 4 * kt; ++r) {
        const int w = mma::reg_word(b, r), sl = mma::reg_slot(b, r), j = r / 4, cls = mma::tile_class(b, j);
        EXPECT_GE(w, 0);
        EXPECT_LT(w, W);
        EXPECT_GE(sl, 0);
        EXPECT_LT(sl, S);
        EXPECT_TRUE(seen.insert(w * S + sl).second) << "register " << r;
        EXPECT_EQ(b * sl - mma::slot_shift(b, sl), b * cls) << "register " << r;
        EXPECT_LE(b * (cls + 1), 10) << "register " << r << " leaves the mantissa";
        EXPECT_LT(cls, mma::classes(b));
      }
    }
}

TEST(GlvqMmaLayout, FragmentOrderIsAPermutationMatchingTheBFragment) {
  const int64_t in = 64;
  std::vector<float> xt(in);
  for (int64_t c = 0; c < in; ++c) xt[c] = float(c);
  const std::vector<float> f = test::to_fragment_order(xt, in, 1);
  for (int64_t c = 0; c < in; ++c) EXPECT_EQ(f[mma::xt_pos(c)], float(c)) << c;
}

struct Case {
  GlvqLayout L;
  std::vector<uint8_t> bits;
  int batch;
};

TEST(GlvqMmaLayout, EmulatedGemvMatchesReference) {
  const std::vector<Case> cases = {
      {{3, 48, 8, 16}, {1, 3, 2}, 1},             // out < 16, kt = 1, mixed bits
      {{37, 256, 8, 128}, {2}, 3},                // kt = 8
      {{20, 192, 32, 64}, {3, 1, 4}, 9},          // kt = 4, d = 32
      {{16, 96, 4, 32}, {4, 2, 1}, 16},           // kt = 2, d = 4
      {{33, 480, 16, 96}, {5, 6, 7, 8, 2}, 2},    // kt = 2 (96 = 6 tiles), wide codes
      {{18, 256, 8, 256}, {3}, 1},                // kt = 8 with 2 chunks per group
  };
  uint32_t seed = 9100;
  for (const Case& cs : cases) {
    SCOPED_TRACE(testing::Message() << "seed " << seed << " out " << cs.L.out << " in " << cs.L.in << " d "
                                    << cs.L.dim << " gs " << cs.L.group_size);
    const Layer y = test::make_layer(seed++, cs.L, cs.bits, {0.0f});
    const GlvqMmaPlan P = glvq_mma_plan(cs.L.out, cs.L.in, cs.L.dim, cs.L.group_size, y.bits.data());
    std::vector<uint8_t> packed(P.bytes(), 0xEE);
    glvq_mma_repack(P, y.bits.data(), y.codes.data(), packed.data());
    // every register's codes are the checkpoint's z
    const std::vector<float> z = test::emulate_unpack(P, packed);
    const GlvqLayout& L = cs.L;
    for (int64_t r = 0; r < P.row_tiles * 16; ++r)
      for (int64_t c = 0; c < L.in; ++c) {
        float expect = 0.0f;  // padded rows hold z = 0
        if (r < L.out) {
          const int64_t g = c / L.group_size, v = (c % L.group_size) / L.dim;
          const int b = y.bits[g];
          std::vector<int32_t> uz(L.dim);
          glvq_unpack_vec(y.codes.data() + y.off[g] + (r * L.vecs_per_row() + v) * glvq_vec_bytes(L.dim, b), L.dim, b,
                          uz.data());
          expect = float(uz[c % L.dim] - (1 << (b - 1)));
        }
        ASSERT_EQ(z[r * L.in + c], expect) << "row " << r << " col " << c;
      }
    // the GEMV identity: sum_c z xt + 1/2 sum xt == W_hat x (up to xt's fp16 rounding)
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(size_t(cs.batch) * L.in);
    for (auto& v : x) v = test::half_value(test::half_bits(nd(rng)));
    const std::vector<float> xt = test::transformed_x(y, x, cs.batch);
    const std::vector<double> ye = test::emulate_gemv(P, z, xt, cs.batch);
    std::vector<float> Wh(size_t(L.out) * L.in);
    glvq_decode_ref(L, y.view(), y.codes.data(), Wh.data());
    for (int n = 0; n < cs.batch; ++n) {
      std::vector<float> yr(L.out);
      glvq_gemv_ref(L, y.view(), y.codes.data(), x.data() + n * L.in, yr.data());
      for (int64_t r = 0; r < L.out; ++r) {
        double mag = 0;
        for (int64_t c = 0; c < L.in; ++c) mag += std::fabs(double(Wh[r * L.in + c]) * x[n * L.in + c]);
        ASSERT_NEAR(ye[n * L.out + r], yr[r], 1e-3 * mag + 1e-6) << "batch col " << n << " row " << r;
      }
    }
  }
}

TEST(GlvqMmaLayout, RejectsCompandingAndOddGroups) {
  const uint8_t bits[4] = {2, 2, 2, 2};
  const float mu0[4] = {0, 0, 0, 0}, mu1[4] = {0, 10, 0, 0};
  EXPECT_EQ(glvq_mma_unsupported(8, 128, 8, 32, bits, mu0), "");
  EXPECT_NE(glvq_mma_unsupported(8, 128, 8, 32, bits, mu1), "");
  EXPECT_NE(glvq_mma_unsupported(8, 96, 8, 24, bits, mu0), "");
  EXPECT_THROW(glvq_mma_plan(8, 96, 8, 24, bits), std::invalid_argument);
}

}  // namespace
}  // namespace glvq
