// Trains the shaped codebooks of quant/glvq_codebook.h on i.i.d. N(0, 1) data
// and writes quant/glvq_codebook_tables.h (the committed file is this tool's
// output with its defaults, run from the repository root; ~30 min on 2 cores):
//   build/train_codebook --out src/quant/glvq_codebook_tables.h [--threads 2]
// 2-bit book: Lloyd's algorithm over the structured set {signs (x) |a_i|} (1024
// patterns, each half's sign parity fixed per pattern): assignment = the exact
// nearest point (the decoder's set), update = per pattern the mean of the
// assigned samples folded by the codeword's signs. 60 rounds on 1.5M samples,
// then 15 on 6M (fresh samples: less overfitting). 1-bit book: plain k-means,
// 256 points. Values rounded to multiples of 1/256. Then the scale of every
// residual stage of 3..8-bit codes, by a search on the MSE of the stage encoder.
// Plain C++ (no LibTorch). Deterministic for a given seed and thread count (the
// per-thread sums are added in thread order).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int D = 8;
constexpr int P2 = 1024;

/// splitmix64 + Box-Muller: the same samples on every platform.
struct Gauss {
  uint64_t s;
  bool have = false;
  double spare = 0;
  explicit Gauss(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double operator()() {
    if (have) {
      have = false;
      return spare;
    }
    const double r = std::sqrt(-2 * std::log(uniform())), t = 2 * M_PI * uniform();
    spare = r * std::sin(t);
    have = true;
    return r * std::cos(t);
  }
};

std::vector<float> samples(size_t n, uint64_t seed) {
  Gauss g(seed);
  std::vector<float> x(n * D);
  for (auto& v : x) v = float(g());
  return x;
}

template <typename Fn>
void parallel(int threads, size_t n, Fn fn) {
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([=] { fn(t, n * t / threads, n * (t + 1) / threads); });
  for (auto& t : ts) t.join();
}

/// The 2-bit book: patterns a[i] >= 0, parity[i] (bit h: negatives in half h odd).
struct Book2 {
  std::vector<float> a = std::vector<float>(P2 * D);
  std::vector<int> parity = std::vector<int>(P2);
  /// Nearest point to x: its pattern and signs (bit j: coordinate j negative). Returns the distance.
  double nearest(const float* x, int* pat, uint32_t* sign) const {
    float ax[D];
    uint32_t neg = 0;
    for (int j = 0; j < D; ++j) {
      ax[j] = std::fabs(x[j]);
      neg |= uint32_t(x[j] < 0) << j;
    }
    const int par = (__builtin_popcount(neg & 15u) & 1) | ((__builtin_popcount(neg >> 4) & 1) << 1);
    double best = 1e300;
    for (int i = 0; i < P2; ++i) {
      const float* ai = &a[i * D];
      double dist = 0;
      for (int j = 0; j < D; ++j) dist += double(ax[j] - ai[j]) * (ax[j] - ai[j]);
      if (dist >= best) continue;
      uint32_t s = neg;
      const int mism = par ^ parity[i];
      for (int h = 0; h < 2; ++h) {
        if (!((mism >> h) & 1)) continue;
        int jm = 4 * h;
        for (int j = 4 * h + 1; j < 4 * h + 4; ++j)
          if (ax[j] * ai[j] < ax[jm] * ai[jm]) jm = j;
        dist += 4.0 * ax[jm] * ai[jm];
        s ^= 1u << jm;
      }
      if (dist < best) {
        best = dist;
        *pat = i;
        *sign = s;
      }
    }
    return best;
  }
  void point(int i, uint32_t sign, float* c) const {
    for (int j = 0; j < D; ++j) c[j] = ((sign >> j) & 1) ? -a[i * D + j] : a[i * D + j];
  }
};

double lloyd2(Book2& B, const std::vector<float>& X, int rounds, int threads, const char* what) {
  const size_t n = X.size() / D;
  double mse = 0;
  for (int it = 0; it < rounds; ++it) {
    std::vector<std::vector<double>> sum(threads, std::vector<double>(P2 * D, 0.0)), cnt(threads, std::vector<double>(P2, 0.0));
    std::vector<double> err(threads, 0.0);
    parallel(threads, n, [&](int t, size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        int p = 0;
        uint32_t s = 0;
        err[t] += B.nearest(&X[i * D], &p, &s);
        for (int j = 0; j < D; ++j) sum[t][p * D + j] += ((s >> j) & 1) ? -X[i * D + j] : X[i * D + j];
        cnt[t][p] += 1;
      }
    });
    mse = 0;
    for (int t = 0; t < threads; ++t) mse += err[t];
    mse /= double(n) * D;
    for (int p = 0; p < P2; ++p) {
      double c = 0;
      for (int t = 0; t < threads; ++t) c += cnt[t][p];
      if (c == 0) continue;  // an empty cell keeps its pattern
      for (int j = 0; j < D; ++j) {
        double s = 0;
        for (int t = 0; t < threads; ++t) s += sum[t][p * D + j];
        B.a[p * D + j] = float(std::max(0.0, s / c));
      }
    }
    if (it % 10 == 0 || it + 1 == rounds) std::fprintf(stderr, "  %s round %d: mse %.5f\n", what, it, mse);
  }
  return mse;
}

struct Book1 {
  std::vector<float> v = std::vector<float>(256 * D);
  double nearest(const float* x, int* k) const {
    double best = 1e300;
    for (int i = 0; i < 256; ++i) {
      double dist = 0;
      for (int j = 0; j < D; ++j) dist += double(x[j] - v[i * D + j]) * (x[j] - v[i * D + j]);
      if (dist < best) {
        best = dist;
        *k = i;
      }
    }
    return best;
  }
};

double lloyd1(Book1& B, const std::vector<float>& X, int rounds, int threads) {
  const size_t n = X.size() / D;
  double mse = 0;
  for (int it = 0; it < rounds; ++it) {
    std::vector<std::vector<double>> sum(threads, std::vector<double>(256 * D, 0.0)), cnt(threads, std::vector<double>(256, 0.0));
    std::vector<double> err(threads, 0.0);
    parallel(threads, n, [&](int t, size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        int k = 0;
        err[t] += B.nearest(&X[i * D], &k);
        for (int j = 0; j < D; ++j) sum[t][k * D + j] += X[i * D + j];
        cnt[t][k] += 1;
      }
    });
    mse = 0;
    for (int t = 0; t < threads; ++t) mse += err[t];
    mse /= double(n) * D;
    for (int k = 0; k < 256; ++k) {
      double c = 0;
      for (int t = 0; t < threads; ++t) c += cnt[t][k];
      if (c == 0) continue;
      for (int j = 0; j < D; ++j) {
        double s = 0;
        for (int t = 0; t < threads; ++t) s += sum[t][k * D + j];
        B.v[k * D + j] = float(s / c);
      }
    }
    if (it % 10 == 0 || it + 1 == rounds) std::fprintf(stderr, "  1-bit round %d: mse %.5f\n", it, mse);
  }
  return mse;
}

float grid256(float x) { return std::round(x * 256.0f) / 256.0f; }

/// MSE at the best overall scale of the residual code with stage books BOOKS and scales BETA,
/// greedy after the first stage (the encoder's beam only refines this; the scale is what is fitted).
double stage_mse(const Book2& b2, const Book1& b1, const std::vector<int>& books, const std::vector<double>& beta,
                 const std::vector<float>& X, int threads) {
  const size_t n = X.size() / D;
  double best = 1e300;
  for (double a = 0.96; a <= 1.161; a += 0.04) {
    std::vector<double> err(threads, 0.0);
    parallel(threads, n, [&](int t, size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) {
        float r[D], c[D], y[D];
        for (int j = 0; j < D; ++j) r[j] = float(X[i * D + j] / a);
        for (size_t s = 0; s < books.size(); ++s) {
          for (int j = 0; j < D; ++j) y[j] = float(r[j] / beta[s]);
          if (books[s] == 2) {
            int p = 0;
            uint32_t sg = 0;
            b2.nearest(y, &p, &sg);
            b2.point(p, sg, c);
          } else {
            int k = 0;
            b1.nearest(y, &k);
            std::memcpy(c, &b1.v[k * D], sizeof c);
          }
          for (int j = 0; j < D; ++j) r[j] = float(r[j] - beta[s] * c[j]);
        }
        for (int j = 0; j < D; ++j) err[t] += double(r[j]) * r[j] * a * a;
      }
    });
    double e = 0;
    for (double v : err) e += v;
    best = std::min(best, e / (double(n) * D));
  }
  return best;
}

std::string fl(double x) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", x);
  std::string s = b;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s + "f";
}

}  // namespace

int main(int argc, char** argv) {
  std::string out;
  int threads = 2;
  uint64_t seed = 20251202;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--out")) out = argv[i + 1];
    else if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--seed")) seed = std::strtoull(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: train_codebook --out FILE [--threads N] [--seed S]\n");
      return 2;
    }
  }
  if (out.empty()) {
    std::fprintf(stderr, "usage: train_codebook --out FILE [--threads N] [--seed S]\n");
    return 2;
  }
  // 2-bit book: patterns start at |x| of samples, parities cycling over the four classes.
  Book2 b2;
  {
    const std::vector<float> init = samples(P2, seed + 1);
    for (int i = 0; i < P2; ++i) {
      b2.parity[i] = i % 4;
      for (int j = 0; j < D; ++j) b2.a[i * D + j] = std::fabs(init[i * D + j]);
    }
    lloyd2(b2, samples(1500000, seed + 2), 60, threads, "2-bit (1.5M)");
    const double mse2 = lloyd2(b2, samples(6000000, seed + 3), 15, threads, "2-bit (6M)");
    std::fprintf(stderr, "2-bit book: training mse %.5f\n", mse2);
    for (auto& v : b2.a) v = grid256(v);
  }
  Book1 b1;
  {
    const std::vector<float> init = samples(256, seed + 4);
    std::copy(init.begin(), init.end(), b1.v.begin());
    lloyd1(b1, samples(2000000, seed + 5), 60, threads);
    for (auto& v : b1.v) v = grid256(v);
  }
  // Residual stages: b/2 stages of the 2-bit book, then the 1-bit book for odd b.
  const std::vector<float> Xs = samples(20000, seed + 6);
  double beta[8][4] = {};
  for (int bits = 1; bits <= 8; ++bits) {
    std::vector<int> books;
    for (int b = bits; b > 0; b -= 2) books.push_back(b >= 2 ? 2 : 1);
    std::vector<double> be(books.size(), 1.0);
    for (size_t s = 1; s < books.size(); ++s) be[s] = be[s - 1] * 0.3;
    for (int round = 0; round < 2; ++round)
      for (size_t s = 1; s < books.size(); ++s) {
        double best = 1e300, bv = be[s];
        const double b0 = be[s];
        for (double f = 0.8; f <= 1.201; f += 0.05) {
          be[s] = b0 * f;
          const double m = stage_mse(b2, b1, books, be, Xs, threads);
          if (m < best) {
            best = m;
            bv = be[s];
          }
        }
        be[s] = bv;
      }
    for (size_t s = 0; s < books.size(); ++s) beta[bits - 1][s] = be[s];
    std::fprintf(stderr, "%d bits: stage scales", bits);
    for (double b : be) std::fprintf(stderr, " %.4f", b);
    std::fprintf(stderr, " (mse %.6f)\n", stage_mse(b2, b1, books, be, Xs, threads));
  }

  FILE* f = std::fopen((out + ".tmp").c_str(), "w");
  if (!f) {
    std::fprintf(stderr, "train_codebook: cannot write %s.tmp\n", out.c_str());
    return 1;
  }
  std::fprintf(f, "#pragma once\n// Generated by bench/train_codebook.cpp (seed %llu); do not edit. The shaped\n"
                  "// codebooks of quant/glvq_codebook.h, values in units of 1/256 (exact in fp16 and float).\n"
                  "#include <cstdint>\n\nnamespace glvq {\nnamespace cbt {\n\nconstexpr int kBook2Patterns = %d;\n",
               static_cast<unsigned long long>(seed), P2);
  std::fprintf(f, "/// |c| of each 2-bit pattern.\nconstexpr uint16_t kBook2Abs[kBook2Patterns][8] = {\n");
  for (int i = 0; i < P2; ++i) {
    std::fprintf(f, "    {");
    for (int j = 0; j < D; ++j) std::fprintf(f, "%s%d", j ? ", " : "", int(std::lround(b2.a[i * D + j] * 256)));
    std::fprintf(f, "}%s\n", i + 1 < P2 ? "," : "");
  }
  std::fprintf(f, "};\n/// Required parity of negative signs per half (bit 0: coordinates 0-3, bit 1: 4-7).\n"
                  "constexpr uint8_t kBook2Parity[kBook2Patterns] = {");
  for (int i = 0; i < P2; ++i) std::fprintf(f, "%s%d", i ? ", " : "", b2.parity[i]);
  std::fprintf(f, "};\n/// The 1-bit book: 256 signed points.\nconstexpr int16_t kBook1[256][8] = {\n");
  for (int i = 0; i < 256; ++i) {
    std::fprintf(f, "    {");
    for (int j = 0; j < D; ++j) std::fprintf(f, "%s%d", j ? ", " : "", int(std::lround(b1.v[i * D + j] * 256)));
    std::fprintf(f, "}%s\n", i + 1 < 256 ? "," : "");
  }
  std::fprintf(f, "};\n/// Scale of each residual stage of a b-bit code (row b - 1).\nconstexpr float kStageBeta[8][4] = {\n");
  for (int b = 0; b < 8; ++b) {
    std::fprintf(f, "    {");
    for (int s = 0; s < 4; ++s) std::fprintf(f, "%s%s", s ? ", " : "", fl(beta[b][s]).c_str());
    std::fprintf(f, "}%s\n", b + 1 < 8 ? "," : "");
  }
  std::fprintf(f, "};\n\n}  // namespace cbt\n}  // namespace glvq\n");
  if (std::fclose(f) != 0 || std::rename((out + ".tmp").c_str(), out.c_str()) != 0) {
    std::fprintf(stderr, "train_codebook: cannot write %s\n", out.c_str());
    return 1;
  }
  std::fprintf(stderr, "train_codebook: wrote %s\n", out.c_str());
  return 0;
}
