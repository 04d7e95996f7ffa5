#include "quant/glvq_bit_alloc.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/error.h"

namespace glvq {
namespace {

/// Indices 0..n-1 by decreasing KEY (ties by index: deterministic).
std::vector<int64_t> order_desc(const std::vector<double>& key) {
  std::vector<int64_t> o(key.size());
  std::iota(o.begin(), o.end(), int64_t{0});
  std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) { return key[a] > key[b]; });
  return o;
}

std::vector<int> alloc_salience(int N, const std::vector<double>& sal, const std::vector<double>& lm,
                                const std::vector<double>& l0, const std::vector<double>& lp) {
  const int64_t B = static_cast<int64_t>(sal.size());
  const std::vector<int64_t> o = order_desc(sal);
  // cost(k) = sum of l0 + sum_{top k}(lp - l0) + sum_{bottom k}(lm - l0): two pointers moving inwards.
  double best = std::accumulate(l0.begin(), l0.end(), 0.0), cur = best;
  int64_t best_k = 0;
  for (int64_t k = 1; 2 * k <= B; ++k) {
    const int64_t top = o[k - 1], bot = o[B - k];
    cur += (lp[top] - l0[top]) + (lm[bot] - l0[bot]);
    if (cur < best) best = cur, best_k = k;
  }
  std::vector<int> bits(B, N);
  for (int64_t k = 0; k < best_k; ++k) bits[o[k]] = N + 1, bits[o[B - 1 - k]] = N - 1;
  return bits;
}

std::vector<int> alloc_exact(int N, const std::vector<double>& lm, const std::vector<double>& l0,
                             const std::vector<double>& lp) {
  const int64_t B = static_cast<int64_t>(l0.size()), W = 2 * B + 1;  // balance = #(N+1) - #(N-1) in [-B, B]
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> cost(W, inf), next(W);
  std::vector<int8_t> choice(static_cast<size_t>(B * W), 0);
  cost[B] = 0;
  for (int64_t g = 0; g < B; ++g) {
    std::fill(next.begin(), next.end(), inf);
    for (int64_t j = 0; j < W; ++j) {
      if (cost[j] == inf) continue;
      const double c[3] = {lm[g], l0[g], lp[g]};
      for (int dlt = -1; dlt <= 1; ++dlt) {
        const int64_t k = j + dlt;
        if (k < 0 || k >= W) continue;
        const double v = cost[j] + c[dlt + 1];
        if (v < next[k]) next[k] = v, choice[g * W + k] = static_cast<int8_t>(dlt);
      }
    }
    cost.swap(next);
  }
  std::vector<int> bits(B);
  for (int64_t g = B - 1, j = B; g >= 0; --g) {
    const int dlt = choice[g * W + j];
    bits[g] = N + dlt;
    j -= dlt;
  }
  return bits;
}

}  // namespace

std::vector<int> glvq_allocate_bits(double N, const std::vector<double>& salience, bool bit_alloc,
                                    const std::function<std::vector<double>(int)>& loss_at, GlvqAllocSearch search) {
  const int64_t B = static_cast<int64_t>(salience.size());
  GLVQ_CHECK(N >= 1 && N <= 8, "quant.bits = {} is out of range for glvq (1..8 bits per weight)", N);
  GLVQ_ASSERT(B > 0);
  const int lo = static_cast<int>(std::floor(N));
  const double frac = N - lo;
  if (frac == 0) {
    if (!bit_alloc || lo < 2 || lo > 7 || B < 2) return std::vector<int>(B, lo);
    const std::vector<double> lm = loss_at(lo - 1), l0 = loss_at(lo), lp = loss_at(lo + 1);
    GLVQ_ASSERT(static_cast<int64_t>(lm.size()) == B && static_cast<int64_t>(l0.size()) == B &&
                static_cast<int64_t>(lp.size()) == B);
    return search == GlvqAllocSearch::exact ? alloc_exact(lo, lm, l0, lp) : alloc_salience(lo, salience, lm, l0, lp);
  }
  const int64_t n_hi = std::llround(frac * static_cast<double>(B));
  std::vector<double> key = salience;
  if (bit_alloc) {
    const std::vector<double> l_lo = loss_at(lo), l_hi = loss_at(lo + 1);
    for (int64_t g = 0; g < B; ++g) key[g] = l_lo[g] - l_hi[g];
  }
  const std::vector<int64_t> o = order_desc(key);
  std::vector<int> bits(B, lo);
  for (int64_t k = 0; k < n_hi; ++k) bits[o[k]] = lo + 1;
  return bits;
}

std::vector<int> glvq_allocate_layer_bits(double N, int64_t in, int64_t gs, const std::vector<double>& salience,
                                          bool bit_alloc, const std::function<std::vector<double>(int)>& loss_at,
                                          GlvqAllocSearch search) {
  const int64_t B = (in + gs - 1) / gs;
  GLVQ_CHECK(static_cast<int64_t>(salience.size()) == B, "bit allocation: {} saliences for {} groups", salience.size(), B);
  if (in % gs == 0) return glvq_allocate_bits(N, salience, bit_alloc, loss_at, search);
  const int lo = static_cast<int>(std::floor(N));
  const bool frac = N != lo;
  std::vector<int> widths;
  if (B > 1) {
    const double n_full = static_cast<double>(B - 1);
    const double Nf = frac ? std::min(lo + 1.0, lo + (N - lo) * static_cast<double>(in) / (n_full * gs)) : N;
    const std::vector<double> sal_full(salience.begin(), salience.end() - 1);
    widths = glvq_allocate_bits(
        Nf, sal_full, bit_alloc,
        [&](int b) {
          std::vector<double> l = loss_at(b);
          l.pop_back();
          return l;
        },
        search);
  }
  widths.push_back(lo);
  return widths;
}

}  // namespace glvq
