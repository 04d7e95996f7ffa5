// The worker's GPU path decodes checkpoint layers with the CUDA kernel
// (dequantize_on): it must give the CPU reference's weights exactly, with and
// without incoherence and companding, so that a GPU validate measures what a
// CPU validate would.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "glvq_test_util.h"
#include "quant/glvq.h"
#include "quant/quantizer.h"

namespace glvq {
namespace {

QuantizedLinear quantize_random(uint64_t seed, bool incoherence, bool companding, int dim,
                                const std::string& code = "box") {
  at::manual_seed(static_cast<int64_t>(seed));
  const int64_t out = 96, in = 256;
  at::Tensor W = at::randn({out, in}) * 0.02;
  at::Tensor X = at::randn({512, in});
  at::Tensor H = X.t().matmul(X);
  GlvqOptions o;
  o.cfg.dim = dim;
  o.cfg.group_size = 128;
  o.cfg.iters = 20;
  o.cfg.incoherence = incoherence;
  o.cfg.companding = companding;
  o.cfg.code = code;
  o.cfg.lloyd_iters = 1;
  o.bits = 2.0;
  o.seed = seed;
  return glvq_quantize_layer(W, H, "test.layer", o);
}

TEST(GlvqDequantizeGpu, MatchesCpuReferenceExactly) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const at::Device gpu(at::kCUDA, 0);
  uint64_t seed = 4100;
  for (const char* code : {"box", "shaped"})
  for (bool inc : {false, true})
    for (bool comp : {false, true})
      for (int dim : {8, 32}) {
        if (comp && std::string(code) == "shaped") continue;  // the shaped code has no companding
        SCOPED_TRACE(testing::Message() << "seed " << seed << " code " << code << " incoherence " << inc
                                        << " companding " << comp << " dim " << dim);
        const QuantizedLinear q = quantize_random(seed++, inc, comp, dim, code);
        const at::Tensor cpu = dequantize(q);
        const at::Tensor dev = dequantize_on(q, gpu);
        ASSERT_TRUE(dev.is_cuda());
        ASSERT_EQ(dev.sizes(), cpu.sizes());
        // Without incoherence both sides decode bit for bit; the inverse
        // transform then runs as matmuls on each device (fp32 rounding).
        const double tol = inc ? 1e-5 * cpu.abs().max().item<double>() : 0.0;
        EXPECT_LE((dev.cpu() - cpu).abs().max().item<double>(), tol);
      }
}

}  // namespace
}  // namespace glvq
