// The shaped codebooks' decoder and nearest-codeword search (the spec is glvq_codebook.h).
#include "quant/glvq_codebook.h"

#include <cmath>

#include "common/error.h"
#include "kernels/glvq_math.h"
#include "kernels/glvq_topk.h"
#include "quant/glvq_codebook_tables.h"

namespace glvq {
namespace {

constexpr int kBeam = 4;  // stage-0 candidates a multi-stage encode follows
static_assert(kMaxCandidates <= kTopKMax, "a search keeps at most kTopKMax candidates");

// The pattern loop is most of a shaped encode's time; AVX2 doubles its width where the CPU has it.
// The same separately rounded adds and multiplies run in either clone, so the floats are equal.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define GLVQ_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define GLVQ_SIMD_CLONES
#endif

/// The 2-bit book as floats (the table holds multiples of 1/256: exact), also
/// coordinate-major so that the distance loop over patterns vectorises.
struct Book2 {
  static constexpr int P = cbt::kBook2Patterns;
  float a[P][8];
  float at[8][P];
  uint8_t parity[P];
  Book2() {
    for (int i = 0; i < P; ++i) {
      for (int j = 0; j < 8; ++j) at[j][i] = a[i][j] = float(cbt::kBook2Abs[i][j]) / 256.0f;
      parity[i] = cbt::kBook2Parity[i];
    }
  }
};
struct Book1 {
  float v[256][8];
  Book1() {
    for (int i = 0; i < 256; ++i)
      for (int j = 0; j < 8; ++j) v[i][j] = float(cbt::kBook1[i][j]) / 256.0f;
  }
};
const Book2& book2() {
  static const Book2 b;
  return b;
}
const Book1& book1() {
  static const Book1 b;
  return b;
}

void decode2(uint32_t k, float* c) {
  const Book2& B = book2();
  const uint32_t i = k >> 6, s = k & 63u;
  uint32_t sign = (s & 7u) | ((s >> 3) << 4);  // bits 0-2 -> coords 0-2, bits 3-5 -> coords 4-6
  const uint32_t lo = ((s & 1u) ^ ((s >> 1) & 1u) ^ ((s >> 2) & 1u)) ^ (B.parity[i] & 1u);
  const uint32_t hi = (((s >> 3) & 1u) ^ ((s >> 4) & 1u) ^ ((s >> 5) & 1u)) ^ ((B.parity[i] >> 1) & 1u);
  sign |= (lo << 3) | (hi << 7);
  for (int j = 0; j < 8; ++j) c[j] = ((sign >> j) & 1u) ? -B.a[i][j] : B.a[i][j];
}

void decode1(uint32_t k, float* c) {
  for (int j = 0; j < 8; ++j) c[j] = book1().v[k][j];
}

void decode_book(int book, uint32_t k, float* c) { book == 2 ? decode2(k, c) : decode1(k, c); }

/// The K nearest points of the 2-bit book. For a pattern, the best signs are y's
/// own; when that breaks a half's parity, flipping the coordinate j of the half
/// with the least 4 |y_j| a_j is the cheapest fix (each flip costs that much).
/// Distances are sums of separately rounded products (no fma), j ascending, so
/// that the loop over patterns vectorises on any CPU and a GPU gets the same floats.
GLVQ_SIMD_CLONES void kbest2(const float* y, TopK& top) {
  const Book2& B = book2();
  constexpr int P = Book2::P;
  float ay[8];
  uint32_t neg = 0;
  for (int j = 0; j < 8; ++j) {
    ay[j] = fp::abs(y[j]);
    neg |= uint32_t(y[j] < 0.0f) << j;
  }
  const uint32_t par = (__builtin_popcount(neg & 15u) & 1u) | ((__builtin_popcount(neg >> 4) & 1u) << 1);
  alignas(32) float dist[P], pen[2][P];
  for (int i = 0; i < P; ++i) dist[i] = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float yj = ay[j];
    const float* aj = B.at[j];
    for (int i = 0; i < P; ++i) {
      const float e = fp::sub(yj, aj[i]);
      dist[i] = fp::add(dist[i], fp::mul(e, e));
    }
  }
  for (int h = 0; h < 2; ++h) {
    float* ph = pen[h];
    for (int i = 0; i < P; ++i) ph[i] = fp::mul(fp::mul(ay[4 * h], B.at[4 * h][i]), 4.0f);
    for (int j = 4 * h + 1; j < 4 * h + 4; ++j) {
      const float yj = ay[j];
      const float* aj = B.at[j];
      for (int i = 0; i < P; ++i) {
        const float p = fp::mul(fp::mul(yj, aj[i]), 4.0f);
        ph[i] = p < ph[i] ? p : ph[i];
      }
    }
  }
  for (int i = 0; i < P; ++i) {
    const uint32_t mism = par ^ B.parity[i];
    float d = dist[i];
    if (mism & 1u) d = fp::add(d, pen[0][i]);
    if (mism & 2u) d = fp::add(d, pen[1][i]);
    if (!(d < top.worst())) continue;
    uint32_t sign = neg;
    for (int h = 0; h < 2; ++h) {
      if (!((mism >> h) & 1u)) continue;
      int jm = 4 * h;  // the first coordinate reaching the half's least penalty
      while (fp::mul(fp::mul(ay[jm], B.a[i][jm]), 4.0f) != pen[h][i]) ++jm;
      sign ^= 1u << jm;
    }
    const uint32_t free = (sign & 7u) | (((sign >> 4) & 7u) << 3);
    top.add(d, (uint64_t(i) << 6) | free);
  }
}

void kbest1(const float* y, TopK& top) {
  const Book1& B = book1();
  for (int i = 0; i < 256; ++i) {
    float dist = 0.0f;
    for (int j = 0; j < 8; ++j) {
      const float e = fp::sub(y[j], B.v[i][j]);
      dist = fp::add(dist, fp::mul(e, e));
    }
    top.add(dist, uint64_t(i));
  }
}

void kbest_book(int book, const float* y, TopK& top) { book == 2 ? kbest2(y, top) : kbest1(y, top); }

float dist2(const float* y, const float* c) {
  float d = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float e = fp::sub(y[j], c[j]);
    d = fp::add(d, fp::mul(e, e));
  }
  return d;
}

}  // namespace

GlvqShapedStages glvq_shaped_stages(int bits) {
  GLVQ_CHECK(bits >= 1 && bits <= 8, "shaped GLVQ code: {} bits per coordinate (1..8 allowed)", bits);
  GlvqShapedStages s;
  for (int b = bits; b > 0; b -= 2) s.book[s.count++] = b >= 2 ? 2 : 1;
  for (int k = 0; k < s.count; ++k) s.beta[k] = cbt::kStageBeta[bits - 1][k];
  return s;
}

double glvq_shaped_points(int bits) { return std::ldexp(1.0, 8 * bits); }

void glvq_shaped_decode(int bits, uint64_t code, float* c) {
  const GlvqShapedStages st = glvq_shaped_stages(bits);
  for (int j = 0; j < 8; ++j) c[j] = 0.0f;
  float v[8];
  int shift = 0;
  for (int s = 0; s < st.count; ++s) {
    const int nb = 8 * st.book[s];
    decode_book(st.book[s], uint32_t((code >> shift) & ((uint64_t(1) << nb) - 1)), v);
    for (int j = 0; j < 8; ++j) c[j] = fp::fma(st.beta[s], v[j], c[j]);
    shift += nb;
  }
}

int glvq_shaped_kbest(int book, const float* y, int K, uint64_t* codes, float* dist) {
  GLVQ_ASSERT((book == 1 || book == 2) && K >= 1 && K <= kMaxCandidates);
  TopK top(K);
  kbest_book(book, y, top);
  for (int k = 0; k < top.n; ++k) {
    codes[k] = top.c[k];
    dist[k] = top.d[k];
  }
  return top.n;
}

int glvq_shaped_candidates(int bits, const float* y, int K, uint64_t* codes) {
  GLVQ_CHECK(K >= 1 && K <= kMaxCandidates, "shaped GLVQ code: {} candidates (1..{} allowed)", K, kMaxCandidates);
  const GlvqShapedStages st = glvq_shaped_stages(bits);
  TopK first(K);
  kbest_book(st.book[0], y, first);
  for (int cand = 0; cand < first.n; ++cand) {
    // Greedy through the later stages: each takes the nearest point to what is left, in its own scale.
    uint64_t code = first.c[cand];
    float c[8], v[8], r[8];
    decode_book(st.book[0], uint32_t(code), c);
    int shift = 8 * st.book[0];
    for (int s = 1; s < st.count; ++s) {
      for (int j = 0; j < 8; ++j) r[j] = fp::div(fp::sub(y[j], c[j]), st.beta[s]);
      TopK one(1);
      kbest_book(st.book[s], r, one);
      code |= one.c[0] << shift;
      decode_book(st.book[s], uint32_t(one.c[0]), v);
      for (int j = 0; j < 8; ++j) c[j] = fp::fma(st.beta[s], v[j], c[j]);
      shift += 8 * st.book[s];
    }
    codes[cand] = code;
  }
  return first.n;
}

int glvq_shaped_beam(int bits) { return glvq_shaped_stages(bits).count == 1 ? 1 : kBeam; }

uint64_t glvq_shaped_pick_nearest(int bits, const float* y, const uint64_t* cand, int n, float* dist) {
  uint64_t best = 0;
  float best_d = INFINITY;
  for (int k = 0; k < n; ++k) {
    // Score what the decoder will rebuild (stage sums in its order).
    float c[8];
    glvq_shaped_decode(bits, cand[k], c);
    const float d = dist2(y, c);
    if (d < best_d) {
      best_d = d;
      best = cand[k];
    }
  }
  if (dist) *dist = best_d;
  return best;
}

uint64_t glvq_shaped_encode(int bits, const float* y, float* dist) {
  uint64_t cand[kBeam];
  const int n = glvq_shaped_candidates(bits, y, glvq_shaped_beam(bits), cand);
  return glvq_shaped_pick_nearest(bits, y, cand, n, dist);
}

}  // namespace glvq
