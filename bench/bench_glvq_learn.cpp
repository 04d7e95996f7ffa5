// Time of GLVQ learning per linear layer at Llama-2-70B shapes: one Adam step
// (re-round with the current lattices, loss, gradient, projection) over all of
// a layer's groups (the box code's Adam learning), and the whole
// glvq_quantize_layer call with the box code and with the defaults (shaped).
//   bench_glvq_learn [--device cpu|cuda] [--steps N] [--shapes all|small|q] [--codes box,shaped] [--log DIR]
// --codes shaped times only the defaults (the shaped code: its search runs on the
// GPU with --device cuda); --log DIR writes each layer's time breakdown (prepare,
// init, Lloyd, store) to DIR/logs/rank-0.log.
// Step time = (time with N steps - time with 0 steps) / N, both with error
// feedback off and eps = 0 so that exactly N steps run. Weights are Gaussian
// with per-row scales and a few outlier input columns; H = X^T X of 2048 Gaussian
// rows: learning time does not depend on the values, only on the shapes.
#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/log.h"
#include "quant/glvq.h"

using namespace glvq;

namespace {

struct Shape {
  const char* name;
  int64_t out, in;
};

double seconds(const std::chrono::steady_clock::time_point& t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double run(const at::Tensor& W, const at::Tensor& H, GlvqOptions o) {
  auto t0 = std::chrono::steady_clock::now();
  QuantizedLinear q = glvq_quantize_layer(W, H, "bench", o);  // returns host arrays: synchronised
  return seconds(t0);
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = at::hasCUDA() ? "cuda" : "cpu", shapes = "all", codes = "box,shaped", log_dir;
  int steps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--device")) device = argv[i + 1];
    else if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--shapes")) shapes = argv[i + 1];
    else if (!std::strcmp(argv[i], "--codes")) codes = argv[i + 1];
    else if (!std::strcmp(argv[i], "--log")) log_dir = argv[i + 1];
    else {
      std::fprintf(stderr, "usage: bench_glvq_learn [--device cpu|cuda] [--steps N] [--shapes all|small|q] "
                           "[--codes box,shaped] [--log DIR]\n");
      return 2;
    }
  }
  const at::Device dev = device == "cuda" ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const bool box = codes.find("box") != std::string::npos, shaped = codes.find("shaped") != std::string::npos;
  if (!log_dir.empty()) log_init(log_dir, 0, 1);
  std::vector<Shape> list = {{"q/o_proj", 8192, 8192},
                             {"k/v_proj", 1024, 8192},
                             {"gate/up_proj", 28672, 8192},
                             {"down_proj", 8192, 28672}};
  if (shapes == "small") list = {{"small", 1024, 1024}};
  if (shapes == "q") list.resize(1);  // one 70B-shaped layer (the shaped code's search is slow: docs/GLVQ.md)
  std::printf("bench_glvq_learn: device %s, %d steps, d = 8, group 128, 2 bits\n", device.c_str(), steps);
  std::printf("| layer | out x in | box step ms | box %d steps s | box 0 steps s | box defaults s (200 steps max, "
              "feedback, 2 passes) | shaped (the defaults) s |\n",
              steps);
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const Shape& s : list) {
    at::manual_seed(1);
    at::Tensor W = at::randn({s.out, s.in}, at::TensorOptions().device(dev)) * 0.01;
    W = W * at::exp(at::randn({s.out, 1}, W.options()) * 0.3);
    W.narrow(1, 0, 8).mul_(20.0);  // a few outlier input channels
    at::Tensor X = at::randn({2048, s.in}, W.options());
    at::Tensor H = X.t().matmul(X);
    X = at::Tensor();
    GlvqOptions o;
    o.bits = 2.0;
    o.cfg.code = "box";
    o.cfg.error_feedback = false;
    o.cfg.eps = 0.0;
    o.cfg.iters = 0;
    run(W, H, o);  // warm-up: allocator, kernels, library handles
    double t0 = NAN, tn = NAN, tb = NAN, ts = NAN;
    if (box) {
      t0 = run(W, H, o);
      o.cfg.iters = steps;
      tn = run(W, H, o);
      GlvqOptions d;
      d.bits = 2.0;
      d.cfg.code = "box";
      tb = run(W, H, d);
    }
    if (shaped) {
      GlvqOptions sh;  // the defaults
      sh.bits = 2.0;
      ts = run(W, H, sh);
    }
    std::printf("| %s | %ld x %ld | %.1f | %.2f | %.2f | %.2f | %.2f |\n", s.name, static_cast<long>(s.out),
                static_cast<long>(s.in), 1e3 * (tn - t0) / steps, tn, t0, tb, ts);
    std::fflush(stdout);
  }
  return 0;
}
