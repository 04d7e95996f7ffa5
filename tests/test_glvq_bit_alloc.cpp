// Salience-driven bit allocation: the average stays exactly N, the search finds
// the best balanced assignment, and on a layer whose groups differ strongly in
// salience it beats uniform widths.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>

#include "common/error.h"
#include "quant/glvq.h"
#include "quant/glvq_bit_alloc.h"
#include "quant/glvq_bits_carry.h"

namespace glvq {
namespace {

/// Loss of a group at b bits: its salience times 4^-b (each bit quarters the MSE), jittered.
std::vector<double> model_losses(const std::vector<double>& sal, int b, uint64_t seed) {
  std::mt19937_64 rng(seed * 31 + b);
  std::uniform_real_distribution<double> u(0.8, 1.25);
  std::vector<double> l(sal.size());
  for (size_t g = 0; g < sal.size(); ++g) l[g] = sal[g] * std::pow(4.0, -b) * u(rng);
  return l;
}

std::vector<double> random_salience(int64_t B, uint64_t seed) {
  std::printf("salience seed %lu, %ld groups\n", static_cast<unsigned long>(seed), static_cast<long>(B));
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> d(0.0, 1.5);
  std::vector<double> s(B);
  for (auto& x : s) x = d(rng);
  return s;
}

double total(const std::vector<int>& bits, const std::vector<double>& sal, uint64_t seed) {
  double t = 0;
  for (size_t g = 0; g < bits.size(); ++g) t += model_losses(sal, bits[g], seed)[g];
  return t;
}

TEST(GlvqBitAlloc, IntegerTargetKeepsTheExactAverage) {
  for (uint64_t seed : {1, 2, 3}) {
    for (int64_t B : {2, 3, 7, 16, 57}) {
      const std::vector<double> sal = random_salience(B, seed);
      for (auto search : {GlvqAllocSearch::exact, GlvqAllocSearch::salience}) {
        const std::vector<int> bits = glvq_allocate_bits(
            2, sal, true, [&](int b) { return model_losses(sal, b, seed); }, search);
        ASSERT_EQ(static_cast<int64_t>(bits.size()), B);
        EXPECT_EQ(std::accumulate(bits.begin(), bits.end(), 0), 2 * B);
        int n1 = 0, n3 = 0;
        for (int b : bits) {
          EXPECT_TRUE(b >= 1 && b <= 3);
          n1 += b == 1;
          n3 += b == 3;
        }
        EXPECT_EQ(n1, n3);
        if (B >= 7) {
          EXPECT_GT(n3, 0) << "the salience spread makes promotion pay";
        }
      }
    }
  }
}

TEST(GlvqBitAlloc, ExactSearchIsTheBalancedOptimum) {
  // Brute force over every assignment of {N-1, N, N+1} with the average N.
  const int64_t B = 7;
  for (uint64_t seed : {4, 5, 6}) {
    const std::vector<double> sal = random_salience(B, seed);
    double best = INFINITY;
    std::vector<int> bits(B);
    for (int64_t code = 0; code < 2187; ++code) {  // 3^7
      int64_t c = code, sum = 0;
      for (int64_t g = 0; g < B; ++g, c /= 3) bits[g] = 2 + static_cast<int>(c % 3), sum += bits[g];
      if (sum == 3 * B) best = std::min(best, total(bits, sal, seed));
    }
    const auto loss_at = [&](int b) { return model_losses(sal, b, seed); };
    const std::vector<int> exact = glvq_allocate_bits(3, sal, true, loss_at, GlvqAllocSearch::exact);
    const std::vector<int> paper = glvq_allocate_bits(3, sal, true, loss_at, GlvqAllocSearch::salience);
    EXPECT_NEAR(total(exact, sal, seed), best, 1e-12 * best);
    EXPECT_GE(total(paper, sal, seed), best * (1 - 1e-12));
    const std::vector<int> uniform(B, 3);
    EXPECT_LE(total(paper, sal, seed), total(uniform, sal, seed));
  }
}

TEST(GlvqBitAlloc, FractionalAndEdgeTargets) {
  const std::vector<double> sal = random_salience(10, 7);
  const auto loss_at = [&](int b) { return model_losses(sal, b, 7); };
  for (bool on : {false, true}) {
    const std::vector<int> bits = glvq_allocate_bits(2.5, sal, on, loss_at);
    EXPECT_EQ(std::accumulate(bits.begin(), bits.end(), 0), 25);
    for (int b : bits) EXPECT_TRUE(b == 2 || b == 3);
  }
  // 1.5 bits: 1- and 2-bit groups.
  const std::vector<int> b15 = glvq_allocate_bits(1.5, sal, true, loss_at);
  EXPECT_EQ(std::accumulate(b15.begin(), b15.end(), 0), 15);
  // No N-1 below 1 bit, no N+1 above 8: uniform.
  for (int N : {1, 8}) {
    const std::vector<int> b = glvq_allocate_bits(N, sal, true, loss_at);
    for (int x : b) EXPECT_EQ(x, N);
  }
  // Off: uniform.
  for (int x : glvq_allocate_bits(2, sal, false, loss_at)) EXPECT_EQ(x, 2);
  EXPECT_THROW(glvq_allocate_bits(9, sal, true, loss_at), Error);
}

TEST(GlvqBitAlloc, BeatsUniformOnALayerWithVaryingSalience) {
  const uint64_t seed = 99;
  std::printf("layer seed %lu\n", static_cast<unsigned long>(seed));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t out = 64, in = 512, gs = 64;
  // Column groups whose weights (and so salience) differ by up to 30x.
  at::Tensor W = at::randn({out, in}, gen) * 0.02;
  const float gain[8] = {30, 1, 0.5f, 8, 1, 0.3f, 3, 1};
  for (int g = 0; g < 8; ++g) W.slice(1, g * gs, (g + 1) * gs).mul_(gain[g]);
  const at::Tensor X = at::randn({2 * in, in}, gen);
  const at::Tensor H = at::mm(X.t(), X) / (2.0 * in);
  GlvqOptions o;
  o.bits = 2;
  o.cfg.group_size = gs;
  o.cfg.iters = 10;
  o.cfg.lr = 0.03;
  o.cfg.dim = 8;
  o.cfg.companding = false;
  o.cfg.rounding = "babai";
  o.cfg.error_feedback = false;
  o.cfg.incoherence = false;  // it would mix the groups' columns and even out their salience
  o.cfg.bit_alloc = false;
  const QuantizedLinear uni = glvq_quantize_layer(W, H, "layer", o);
  o.cfg.bit_alloc = true;
  const QuantizedLinear sal = glvq_quantize_layer(W, H, "layer", o);
  const at::Tensor bits = sal.arrays.at("bits");
  EXPECT_EQ(bits.to(at::kLong).sum().item<int64_t>(), 2 * 8);
  EXPECT_EQ(bits.data_ptr<uint8_t>()[0], 3) << "the loudest group gets the extra bit";
  std::printf("loss uniform %.6g, allocated %.6g\n", uni.loss, sal.loss);
  EXPECT_LT(sal.loss, 0.8 * uni.loss);
  // 2.5 bits over 8 groups: four at 2, four at 3.
  o.bits = 2.5;
  const QuantizedLinear frac = glvq_quantize_layer(W, H, "layer", o);
  EXPECT_EQ(frac.arrays.at("bits").to(at::kLong).sum().item<int64_t>(), 20);
  EXPECT_LT(frac.loss, sal.loss);
}

// A block's layers (tiny-llama's shapes, and a 70B block's) quantized one after another at a
// fractional target with B groups per layer, each layer's widths from glvq_allocate_bits.
struct BlockRun {
  double average = 0;
  double worst_layer_low = 99, worst_layer_high = 0;  // the layers' own averages
};
BlockRun run_block(double N, int64_t B, bool carry, const std::vector<int64_t>& weights) {
  BitsCarry c(N);
  BlockRun r;
  for (size_t l = 0; l < weights.size(); ++l) {
    const double t = carry ? c.next(weights[l]) : N;
    const std::vector<double> sal = random_salience(B, 100 + l);
    const std::vector<int> w = glvq_allocate_bits(t, sal, false, nullptr);
    const double avg = std::accumulate(w.begin(), w.end(), 0.0) / double(B);
    r.worst_layer_low = std::min(r.worst_layer_low, avg);
    r.worst_layer_high = std::max(r.worst_layer_high, avg);
    c.spent(weights[l], avg);
  }
  r.average = c.average();
  return r;
}

TEST(GlvqBitsCarry, FractionalTargetsAverageOverTheBlockWithinHalfTheLargestLayer) {
  const std::vector<std::vector<int64_t>> blocks = {
      {384 * 384, 128 * 384, 128 * 384, 384 * 384, 1024 * 384, 1024 * 384, 384 * 1024},  // tiny-llama
      {8192L * 8192, 1024L * 8192, 1024L * 8192, 8192L * 8192, 28672L * 8192, 28672L * 8192,
       8192L * 28672}};  // Llama-2-70B (GQA 64/8)
  for (const auto& weights : blocks) {
    const double total = double(std::accumulate(weights.begin(), weights.end(), int64_t(0)));
    const double largest = double(*std::max_element(weights.begin(), weights.end()));
    for (double N : {2.25, 2.5, 2.75, 3.4}) {
      for (int64_t B : {1, 3, 64}) {
        const BlockRun with = run_block(N, B, true, weights);
        // Error diffusion: a layer that is not clamped leaves at most its own rounding of group
        // counts (1/(2B) bits over its weights) behind; a clamped one only shrinks the excess.
        EXPECT_LE(std::abs(with.average - N), 0.5 * largest / (double(B) * total) + 1e-12)
            << "N " << N << " B " << B << " layers " << weights.size();
        EXPECT_GE(with.worst_layer_low, std::floor(N));
        EXPECT_LE(with.worst_layer_high, std::ceil(N));
        const BlockRun without = run_block(N, B, false, weights);
        if (B == 1) {  // one group per layer: every layer rounds the same way
          EXPECT_EQ(without.average, std::round(N)) << N;
          EXPECT_LT(std::abs(with.average - N), std::abs(without.average - N)) << N;
        }
      }
    }
  }
}

TEST(GlvqBitsCarry, IntegerTargetsAreLeftAlone) {
  BitsCarry c(2.0);
  EXPECT_EQ(c.next(1000), 2.0);
  c.spent(1000, 2.25);  // a layer that ended above (a narrow tail, say) changes nothing
  EXPECT_EQ(c.next(50), 2.0);
  BitsCarry f(2.5);
  EXPECT_EQ(f.next(10), 2.5);
  f.spent(10, 3.0);
  EXPECT_DOUBLE_EQ(f.next(10), 2.0);  // back to 2.5 over the two layers
  f.spent(10, 2.0);
  EXPECT_DOUBLE_EQ(f.average(), 2.5);
  EXPECT_DOUBLE_EQ(f.next(30), 2.5);
}

}  // namespace
}  // namespace glvq
