// Mean squared error per coordinate of GLVQ's codes on i.i.d. N(0, 1) data, at
// 1..4 bits per coordinate, beside the rate-distortion bound 2^(-2b):
//   bench_glvq_codebook [--rows 8192] [--cols 128] [--seed 1]
// Each code quantizes one Gaussian "layer" W [rows, cols] through the whole
// quantizer (glvq_quantize_layer with H = I: no incoherence, no feedback, one
// width for every group, fp16 parameters as stored), so the figure is the MSE
// of what a checkpoint would hold. "learned" runs the code's learning (box:
// Adam on G, 200 steps; shaped: Lloyd rounds); "init" keeps the start (box: the
// Cholesky factor with the Gaussian step; shaped: G = chol E[u u^T]).
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "quant/glvq.h"

using namespace glvq;

namespace {

struct Variant {
  const char* name;
  int dim;
  const char* code;
  bool learn;
};

double mse(const at::Tensor& W, const Variant& v, int bits, int cols) {
  GlvqOptions o;
  o.bits = bits;
  o.cfg.dim = v.dim;
  o.cfg.group_size = cols;
  o.cfg.code = v.code;
  o.cfg.incoherence = false;
  o.cfg.error_feedback = false;
  o.cfg.bit_alloc = false;
  o.cfg.companding = false;
  o.cfg.eps = 0;
  if (!v.learn) {
    o.cfg.iters = 0;
    o.cfg.lloyd_iters = 0;
  }
  const at::Tensor H = at::eye(W.size(1), W.options());
  const QuantizedLinear q = glvq_quantize_layer(W, H, "gaussian", o);
  return (W - glvq_dequantize(q)).square().mean().item<double>();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 8192, cols = 128;
  uint64_t seed = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--rows") rows = std::stoll(argv[i + 1]);
    else if (k == "--cols") cols = std::stoll(argv[i + 1]);
    else if (k == "--seed") seed = std::stoull(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: bench_glvq_codebook [--rows N] [--cols N] [--seed S]\n");
      return 2;
    }
  }
  at::manual_seed(seed);
  const at::Tensor W = at::randn({rows, cols});
  const std::vector<Variant> vs = {{"box 8D, init", 8, "box", false},       {"box 8D, learned", 8, "box", true},
                                   {"shaped 8D, init", 8, "shaped", false}, {"shaped 8D, learned", 8, "shaped", true},
                                   {"shaped 32D, init", 32, "shaped", false}, {"shaped 32D, learned", 32, "shaped", true}};
  std::printf("bench_glvq_codebook: N(0,1) data [%lld, %lld], one group of %lld columns per %lld rows, seed %llu\n",
              static_cast<long long>(rows), static_cast<long long>(cols), static_cast<long long>(cols),
              static_cast<long long>(rows), static_cast<unsigned long long>(seed));
  std::printf("MSE per coordinate (lower is better); last row: the rate-distortion bound of a Gaussian source\n\n");
  std::printf("| code | 1 bit | 2 bits | 3 bits | 4 bits |\n|---|---|---|---|---|\n");
  for (const Variant& v : vs) {
    std::printf("| %s |", v.name);
    for (int b = 1; b <= 4; ++b) {
      std::printf(" %.4f |", mse(W, v, b, static_cast<int>(cols)));
      std::fflush(stdout);
    }
    std::printf("\n");
  }
  std::printf("| rate-distortion bound 2^(-2b) |");
  for (int b = 1; b <= 4; ++b) std::printf(" %.4f |", std::ldexp(1.0, -2 * b));
  std::printf("\n");
  return 0;
}
