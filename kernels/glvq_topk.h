#pragma once
/// The K nearest (distance, code) pairs of a codebook search, ascending. An equal
/// distance found later ranks after, so a scan in point order ranks ties by point
/// index: the rule of the shaped code's CPU reference (quant/glvq_codebook.cpp),
/// which the GPU search (kernels/glvq_shaped.cu) reproduces lane by lane.
/// Callable from host and device.
#include <cmath>
#include <cstdint>

#include "glvq_math.h"

namespace glvq {

constexpr int kTopKMax = 16;  ///< the most candidates a search keeps

struct TopK {
  int K = 1, n = 0;
  float d[kTopKMax];
  uint64_t c[kTopKMax];
  GLVQ_HD explicit TopK(int k) : K(k) {}
  GLVQ_HD float worst() const { return n < K ? INFINITY : d[n - 1]; }
  GLVQ_HD void add(float dist, uint64_t code) {
    if (!(dist < worst())) return;
    int p = n < K ? n++ : K - 1;
    while (p > 0 && dist < d[p - 1]) {
      d[p] = d[p - 1];
      c[p] = c[p - 1];
      --p;
    }
    d[p] = dist;
    c[p] = code;
  }
};

}  // namespace glvq
