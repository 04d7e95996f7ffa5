// The shaped decode-GEMV's work lists (glvq_shaped_gemv_chunks for version 1 and
// glvq_shaped_gemv_work for version 2, host code of kernels/glvq_gemv_shaped.cu) against the
// code layout (quant/glvq_codec.h): every sub-code of every group lies in exactly one chunk,
// the chunk's group, counts (and for version 2 its start, row stride and width) are the
// layout's, its transformed-activation columns stay inside the padded row, and a chunk is
// marked aligned only when every lane's four sub-codes start on a 4-byte boundary in every row.
// Runs without a GPU (host code); skipped in builds without the CUDA kernels.
#include <gtest/gtest.h>

#include <vector>

#include "quant/glvq_codec.h"

#ifdef GLVQ_WITH_CUDA
#include "glvq_gemv.cuh"
#include "glvq_gemv_shaped.cuh"
#endif

namespace glvq {
namespace {

#ifdef GLVQ_WITH_CUDA
struct Case {
  GlvqLayout L;
  std::vector<uint8_t> widths;
};

std::vector<Case> cases() {
  std::vector<Case> cs = {
      {{16, 512, 8, 128}, {2}},         // aligned chunks of 16
      {{37, 688, 8, 128}, {2, 1, 3}},   // odd rows (offsets not 4-aligned), last group 48 = 6 sub-codes
      {{5, 100, 32, 128}, {3}},         // one group, a padded vector of 32
      {{9, 384, 32, 384}, {2, 4}},      // d = 32, one group per row: 3 chunks in the group
      {{12, 96, 8, 32}, {1, 2, 3, 4}},  // 4 sub-codes a group
      {{7, 200, 16, 64}, {5, 8, 2}},    // wide codes, a last group of 8 columns (one padded 16-vector)
      {{5, 272, 8, 136}, {1, 3}},       // 17 sub-codes a row: odd row strides, so no word loads
  };
  for (Case& c : cs) c.L.code = GlvqCode::shaped;
  return cs;
}
#endif

TEST(GlvqShapedGemvChunks, CoverEverySubCodeOnceWithTheLayoutsOffsets) {
#ifndef GLVQ_WITH_CUDA
  GTEST_SKIP() << "built without the CUDA kernels";
#else
  for (Case cs : cases()) {
    GlvqLayout& L = cs.L;
    SCOPED_TRACE(testing::Message() << "out " << L.out << " in " << L.in << " d " << L.dim << " gs " << L.group_size);
    std::vector<uint8_t> bits;
    for (int64_t g = 0; g < L.groups(); ++g) bits.push_back(cs.widths[g % cs.widths.size()]);
    const std::vector<int64_t> off = glvq_group_offsets(L, bits.data());
    const std::vector<int32_t> ch = glvq_shaped_gemv_chunks(L, bits.data(), off.data());
    ASSERT_EQ(ch.size() % 4, 0u);
    std::vector<std::vector<int>> seen(L.groups());
    for (int64_t g = 0; g < L.groups(); ++g) seen[g].assign(L.group_vecs(g) * L.dim / 8, 0);
    for (size_t i = 0; i < ch.size(); i += 4) {
      const int g = ch[i], u0 = ch[i + 1], n = ch[i + 2] & 0xffff, subs = (ch[i + 2] >> 16) & 0xffff;
      ASSERT_TRUE(g >= 0 && g < L.groups());
      ASSERT_EQ(subs, int(seen[g].size())) << "sub-codes per row of group " << g;
      ASSERT_TRUE(n >= 1 && n <= 16 && u0 >= 0 && u0 + n <= subs) << "chunk " << i / 4;
      for (int u = u0; u < u0 + n; ++u) ++seen[g][u];
      // the kernel's xt columns (g gs/8 + u) * 8 .. + 8 n stay inside the padded row
      EXPECT_LE((int64_t(g) * (L.group_size / 8) + u0 + n) * 8, glvq_gemv_xt_cols(L));
      if (ch[i + 3]) {  // aligned: word loads of every lane's 4 sub-codes in every row
        EXPECT_EQ(n, 16);
        for (int64_t r = 0; r < L.out; ++r)
          for (int t = 0; t < 4; ++t)
            EXPECT_EQ((off[g] + (r * subs + u0 + 4 * t) * bits[g]) % 4, 0) << "row " << r << " lane " << t;
      }
    }
    for (int64_t g = 0; g < L.groups(); ++g)
      for (size_t u = 0; u < seen[g].size(); ++u) EXPECT_EQ(seen[g][u], 1) << "group " << g << " sub-code " << u;
  }
#endif
}

TEST(GlvqShapedGemvChunks, VersionTwosListHoldsEachChunksStartStrideAndColumns) {
#ifndef GLVQ_WITH_CUDA
  GTEST_SKIP() << "built without the CUDA kernels";
#else
  for (Case cs : cases()) {
    const GlvqLayout& L = cs.L;
    SCOPED_TRACE(testing::Message() << "out " << L.out << " in " << L.in << " d " << L.dim << " gs " << L.group_size);
    std::vector<uint8_t> bits;
    for (int64_t g = 0; g < L.groups(); ++g) bits.push_back(cs.widths[g % cs.widths.size()]);
    const std::vector<int64_t> off = glvq_group_offsets(L, bits.data());
    const std::vector<int32_t> ch = glvq_shaped_gemv_work(L, bits.data(), off.data());
    // the same chunks as version 1's list, in its order (the kernels split K over list positions)
    ASSERT_EQ(ch.size(), glvq_shaped_gemv_chunks(L, bits.data(), off.data()).size());
    ASSERT_EQ(ch.size() % 4, 0u);
    std::vector<std::vector<int>> seen(L.groups());
    for (int64_t g = 0; g < L.groups(); ++g) seen[g].assign(L.group_vecs(g) * L.dim / 8, 0);
    for (size_t i = 0; i < ch.size(); i += 4) {
      const int64_t base = uint32_t(ch[i]), stride = ch[i + 1];
      const int n = ch[i + 2] & 0xff, b = (ch[i + 2] >> 8) & 15, aligned = (ch[i + 2] >> 12) & 1;
      const int64_t xcol = ch[i + 3];
      ASSERT_EQ(ch[i + 2] >> 13, 0) << "chunk " << i / 4;
      // the group and first sub-code the entry points at, found from the layout alone
      int64_t g = 0;
      while (g + 1 < L.groups() && off[g + 1] <= base) ++g;
      const int64_t subs = int64_t(seen[g].size());
      ASSERT_EQ(b, bits[g]) << "chunk " << i / 4;
      ASSERT_EQ(stride, subs * b) << "bytes per row of group " << g;
      ASSERT_EQ((base - off[g]) % b, 0) << "chunk " << i / 4;
      const int64_t u0 = (base - off[g]) / b;
      ASSERT_TRUE(n >= 1 && n <= 16 && u0 >= 0 && u0 + n <= subs) << "chunk " << i / 4;
      for (int64_t u = u0; u < u0 + n; ++u) ++seen[g][u];
      // the kernel's xt columns: the chunk's own, inside the padded row
      EXPECT_EQ(xcol, (g * (L.group_size / 8) + u0) * 8) << "chunk " << i / 4;
      EXPECT_LE(xcol + 8 * n, glvq_gemv_xt_cols(L));
      if (aligned) {  // word loads of every lane's 4 sub-codes in every row
        EXPECT_EQ(n, 16);
        for (int64_t r = 0; r < L.out; ++r)
          for (int t = 0; t < 4; ++t)
            EXPECT_EQ((base + r * stride + 4 * t * b) % 4, 0) << "row " << r << " lane " << t;
      }
    }
    for (int64_t g = 0; g < L.groups(); ++g)
      for (size_t u = 0; u < seen[g].size(); ++u) EXPECT_EQ(seen[g][u], 1) << "group " << g << " sub-code " << u;
  }
#endif
}

}  // namespace
}  // namespace glvq
