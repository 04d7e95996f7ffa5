// Evaluation chunks and calibration sample selection.
#include "eval/corpus.h"

#include "common/error.h"

#include <gtest/gtest.h>

#include <set>

using namespace glvq;

TEST(Corpus, EvalChunksDropTheTailAndRespectMaxChunks) {
  std::vector<int32_t> ids(1000);
  for (int i = 0; i < 1000; ++i) ids[i] = i;
  at::Tensor c = make_eval_chunks(ids, 300, 0, "t");
  ASSERT_EQ(c.size(0), 3);
  EXPECT_EQ(c[2][299].item<int64_t>(), 899);
  EXPECT_EQ(make_eval_chunks(ids, 300, 2, "t").size(0), 2);
  EXPECT_THROW(make_eval_chunks(ids, 2000, 0, "t"), Error);
}

TEST(Corpus, CalibSamplesAreDistinctChunksAndSeeded) {
  std::vector<int32_t> ids(64 * 10);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  at::Tensor a = make_calib_samples(ids, 64, 6, 7, "t"), b = make_calib_samples(ids, 64, 6, 7, "t");
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_FALSE(at::equal(a, make_calib_samples(ids, 64, 6, 8, "t")));
  std::set<int64_t> starts;
  for (int s = 0; s < 6; ++s) {
    int64_t first = a[s][0].item<int64_t>();
    EXPECT_EQ(first % 64, 0) << "samples are whole chunks";
    EXPECT_EQ(a[s][63].item<int64_t>(), first + 63);
    starts.insert(first);
  }
  EXPECT_EQ(starts.size(), 6u);
  try {
    make_calib_samples(ids, 64, 11, 0, "calib.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calib.txt"), std::string::npos);
  }
}
