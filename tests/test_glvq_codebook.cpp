// The shaped codebooks (src/quant/glvq_codebook.h) against brute force over
// every point of a book, the structure the format promises, and known figures.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "quant/glvq_codebook.h"

namespace glvq {
namespace {

constexpr uint32_t kSeed = 20251202;

/// Every point of a one-stage book (bits 1 or 2), decoded.
std::vector<float> all_points(int bits) {
  const uint64_t n = uint64_t(1) << (8 * bits);
  std::vector<float> pts(n * 8);
  for (uint64_t k = 0; k < n; ++k) glvq_shaped_decode(bits, k, &pts[k * 8]);
  return pts;
}

double sqdist(const float* a, const float* b) {
  double s = 0;
  for (int j = 0; j < 8; ++j) s += double(a[j] - b[j]) * (a[j] - b[j]);
  return s;
}

TEST(GlvqCodebook, OneStageEncodeIsTheNearestPoint) {
  std::mt19937 rng(kSeed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (int bits : {1, 2}) {
    const std::vector<float> pts = all_points(bits);
    const uint64_t np = pts.size() / 8;
    for (int t = 0; t < 400; ++t) {
      float y[8];
      const float scale = t % 4 == 0 ? 3.0f : (t % 4 == 1 ? 0.2f : 1.0f);  // overload and fine scales too
      for (float& v : y) v = n(rng) * scale;
      float dist = -1;
      const uint64_t k = glvq_shaped_encode(bits, y, &dist);
      double best = INFINITY;
      for (uint64_t c = 0; c < np; ++c) best = std::min(best, sqdist(y, &pts[c * 8]));
      float c[8];
      glvq_shaped_decode(bits, k, c);
      EXPECT_NEAR(sqdist(y, c), best, 1e-5 * (1 + best)) << "bits " << bits << " sample " << t;
      EXPECT_NEAR(dist, best, 1e-5 * (1 + best));
    }
  }
}

TEST(GlvqCodebook, KBestAreTheBestPatterns) {
  // The K best of the 2-bit book are one point per magnitude pattern (its best
  // signs): the K smallest, over the 1024 patterns, of each pattern's nearest point.
  std::mt19937 rng(kSeed + 1);
  std::normal_distribution<float> n(0.0f, 1.0f);
  const std::vector<float> pts = all_points(2);
  for (int t = 0; t < 50; ++t) {
    float y[8];
    for (float& v : y) v = n(rng);
    uint64_t codes[8];
    float dist[8];
    ASSERT_EQ(glvq_shaped_kbest(2, y, 8, codes, dist), 8);
    std::vector<double> per_pattern(1024, INFINITY);
    for (uint64_t c = 0; c < 65536; ++c)
      per_pattern[c >> 6] = std::min(per_pattern[c >> 6], sqdist(y, &pts[c * 8]));
    std::sort(per_pattern.begin(), per_pattern.end());
    for (int k = 0; k < 8; ++k) {
      float c[8];
      glvq_shaped_decode(2, codes[k], c);
      EXPECT_NEAR(sqdist(y, c), dist[k], 1e-5 * (1 + dist[k]));
      EXPECT_NEAR(dist[k], per_pattern[k], 1e-5 * (1 + per_pattern[k])) << "rank " << k;
    }
  }
}

TEST(GlvqCodebook, TwoBitPointsKeepEachHalfsParity) {
  // Decoding pattern i with any 6 free sign bits must give a point whose halves have
  // the parity of negatives that the pattern requires; so the sign bits of
  // coordinates 3 and 7 are never stored, and flipping a free bit flips one sign.
  std::mt19937 rng(kSeed + 2);
  for (int t = 0; t < 2000; ++t) {
    const uint64_t k = rng() & 0xffffu;
    float c[8], c2[8];
    glvq_shaped_decode(2, k, c);
    const int bit = static_cast<int>(rng() % 6);
    glvq_shaped_decode(2, k ^ (uint64_t(1) << bit), c2);
    int changed = 0;
    for (int j = 0; j < 8; ++j) changed += (c[j] != c2[j]);
    const int coord = bit < 3 ? bit : bit + 1;
    const bool zero = c[coord] == 0.0f && c[bit < 3 ? 3 : 7] == 0.0f;
    if (!zero) {
      EXPECT_GE(changed, 1);
    }
    EXPECT_EQ(std::fabs(c[coord]), std::fabs(c2[coord]));
    // Only the flipped coordinate and its half's parity coordinate may change.
    for (int j = 0; j < 8; ++j) {
      if (j != coord && j != (bit < 3 ? 3 : 7)) {
        EXPECT_EQ(c[j], c2[j]) << "code " << k << " bit " << bit;
      }
    }
  }
}

/// MSE per coordinate on N(0,1) at the best of a few overall scales.
double gaussian_mse(int bits, int n) {
  std::mt19937 rng(kSeed + 3);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> X(size_t(n) * 8);
  for (float& v : X) v = nd(rng);
  double best = INFINITY;
  for (double a = 0.9; a <= 1.2; a += 0.05) {
    double s = 0;
    for (int i = 0; i < n; ++i) {
      float y[8], c[8];
      for (int j = 0; j < 8; ++j) y[j] = float(X[i * 8 + j] / a);
      glvq_shaped_decode(bits, glvq_shaped_encode(bits, y), c);
      for (int j = 0; j < 8; ++j) s += (X[i * 8 + j] - a * c[j]) * (X[i * 8 + j] - a * c[j]);
    }
    best = std::min(best, s / (8.0 * n));
  }
  return best;
}

TEST(GlvqCodebook, BeatsTheBoxOnGaussianData) {
  // Known figures for N(0,1) at b bits per coordinate: the MSE-optimal uniform
  // scalar quantizer (Max 1960) gives 0.3634, 0.1188, 0.03744, 0.01154; QuIP#'s
  // E8P (2 bits) about 0.090; the rate-distortion bound 2^(-2b). A shaped book
  // must beat the box at every width and stay above the bound (a check of the test).
  const double box[4] = {0.3634, 0.1188, 0.03744, 0.01154};
  for (int bits = 1; bits <= 4; ++bits) {
    const double m = gaussian_mse(bits, bits <= 2 ? 20000 : 3000);
    EXPECT_LT(m, 0.95 * box[bits - 1]) << bits << " bits";
    EXPECT_GT(m, std::ldexp(1.0, -2 * bits)) << bits << " bits";
    if (bits == 2) {
      EXPECT_LT(m, 0.090) << "the 2-bit book should beat E8P";
    }
  }
}

TEST(GlvqCodebook, MultiStageEncodeIsNoWorseThanGreedy) {
  // The beam over the first stage must never lose to taking its nearest point and
  // going on greedily (the beam's own first candidate).
  std::mt19937 rng(kSeed + 4);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int bits : {3, 4, 5}) {
    for (int t = 0; t < 100; ++t) {
      float y[8];
      for (float& v : y) v = nd(rng);
      uint64_t cand[4];
      ASSERT_GE(glvq_shaped_candidates(bits, y, 4, cand), 1);
      float c[8];
      glvq_shaped_decode(bits, cand[0], c);
      float dist;
      glvq_shaped_encode(bits, y, &dist);
      EXPECT_LE(dist, sqdist(y, c) + 1e-6);
    }
  }
}

}  // namespace
}  // namespace glvq
