// The shaped code's GPU encoder and decoder (kernels/glvq_shaped.cu through
// quant/glvq_shaped_cuda.h) against its CPU reference (glvq_shaped_encode_layer on
// CPU tensors): bit for bit without feedback, the same losses with it, and the same
// layer result through glvq_quantize_layer.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "glvq_shaped.cuh"
#include "glvq_test_util.h"
#include "quant/glvq.h"
#include "quant/glvq_codec.h"
#include "quant/glvq_decode_cuda.h"
#include "quant/glvq_feedback.h"
#include "quant/glvq_shaped_ops.h"

namespace glvq {
namespace {

const at::Device kGpu(at::kCUDA, 0);

at::Tensor random_hessian(int64_t n, uint64_t seed) {
  at::manual_seed(static_cast<int64_t>(seed));
  const at::Tensor X = at::randn({4 * n, n}, at::kDouble) * at::exp(at::randn({1, n}, at::kDouble) * 0.5);
  return (X.t().mm(X) / double(4 * n)).to(at::kFloat);
}

/// Random symmetric positive definite d x d metrics, one per vector column.
at::Tensor random_metrics(int64_t P, int64_t d) {
  const at::Tensor A = at::randn({P, d, d});
  return at::bmm(A, A.transpose(1, 2)) / double(d) + 0.1 * at::eye(d).unsqueeze(0);
}

GlvqShapedParams random_params(int64_t B, int64_t d, const std::vector<int64_t>& bits) {
  const at::Tensor G = (at::eye(d).unsqueeze(0) + 0.1 * at::randn({B, d, d})).to(at::kHalf).to(at::kFloat);
  std::vector<int64_t> b;
  for (int64_t g = 0; g < B; ++g) b.push_back(bits[g % bits.size()]);
  return {G, 0.8 + 0.4 * at::rand({B}), at::tensor(b, at::kLong)};
}

GlvqShapedParams on_gpu(const GlvqShapedParams& p) { return {p.G.to(kGpu), p.scale.to(kGpu), p.bits}; }

TEST(GlvqShapedGpu, DecodeIsBitIdenticalWithTheReference) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Case {
    int d, gs;
    int64_t in;
  };
  // Narrower last groups (200 = 3 x 64 + 8; 100 = 3 x 32 + 4: a padded vector) and every width.
  const std::vector<Case> cases = {{8, 64, 200}, {16, 32, 100}, {32, 256, 256}, {64, 128, 192}};
  const std::vector<uint8_t> widths = {1, 2, 3, 4, 5, 8};
  uint64_t seed = 7000;
  for (const Case& k : cases) {
    SCOPED_TRACE(testing::Message() << "d " << k.d << " gs " << k.gs << " in " << k.in);
    at::manual_seed(static_cast<int64_t>(seed++));
    GlvqLayout L;
    L.out = 37;
    L.in = k.in;
    L.dim = k.d;
    L.group_size = k.gs;
    L.code = GlvqCode::shaped;
    const int64_t B = L.groups(), d = k.d;
    std::vector<uint8_t> bits;
    for (int64_t g = 0; g < B; ++g) bits.push_back(widths[(g + seed) % widths.size()]);
    const std::vector<int64_t> off = glvq_group_offsets(L, bits.data());
    const at::Tensor bits_t = at::from_blob(bits.data(), {B}, at::kByte).clone();
    const at::Tensor G = (at::eye(d).unsqueeze(0) + 0.2 * at::randn({B, d, d})).contiguous();
    const at::Tensor Ginv = at::linalg_inv(G.to(at::kDouble)).to(at::kFloat).contiguous();
    const at::Tensor scale = (0.5 + at::rand({B})).contiguous(), mu = at::zeros({B});
    const at::Tensor codes = at::randint(0, 256, {off.back()}, at::kByte);  // every byte string is a valid code
    at::Tensor ref = at::empty({L.out, L.in});
    const GlvqGroupParams hp{bits.data(), scale.data_ptr<float>(), mu.data_ptr<float>(), G.data_ptr<float>(),
                             Ginv.data_ptr<float>()};
    glvq_decode_ref(L, hp, codes.data_ptr<uint8_t>(), ref.data_ptr<float>());
    const at::Tensor W = glvq_decode_cuda(L, bits_t, scale, mu, G, Ginv, off, codes, kGpu);
    EXPECT_TRUE(at::equal(W.cpu(), ref)) << (W.cpu() - ref).abs().max();
    // fp16 / bf16 outputs: the reference rounded to nearest.
    const at::Tensor bd = bits_t.to(kGpu), sd = scale.to(kGpu), md = mu.to(kGpu), Gd = G.to(kGpu),
                     Gid = Ginv.to(kGpu), cd = codes.to(kGpu),
                     od = at::tensor(off, at::kLong).to(kGpu);
    GlvqDeviceParams p;
    p.bits = bd.data_ptr<uint8_t>();
    p.scale = sd.data_ptr<float>();
    p.mu = md.data_ptr<float>();
    p.G = Gd.data_ptr<float>();
    p.Ginv = Gid.data_ptr<float>();
    p.group_offsets = od.data_ptr<int64_t>();
    at::Tensor Wh = at::empty({L.out, L.in}, at::TensorOptions().dtype(at::kHalf).device(kGpu));
    at::Tensor Wb = at::empty({L.out, L.in}, at::TensorOptions().dtype(at::kBFloat16).device(kGpu));
    ASSERT_EQ(glvq_shaped_decode_launch(L, p, cd.data_ptr<uint8_t>(), reinterpret_cast<__half*>(Wh.data_ptr()),
                                        L.in, nullptr),
              cudaSuccess);
    ASSERT_EQ(glvq_shaped_decode_launch(L, p, cd.data_ptr<uint8_t>(),
                                        reinterpret_cast<__nv_bfloat16*>(Wb.data_ptr()), L.in, nullptr),
              cudaSuccess);
    EXPECT_TRUE(at::equal(Wh.cpu(), ref.to(at::kHalf)));
    EXPECT_TRUE(at::equal(Wb.cpu(), ref.to(at::kBFloat16)));
  }
}

TEST(GlvqShapedGpu, EncodeWithoutFeedbackIsBitIdentical) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  struct Case {
    int64_t d, gs;
    std::vector<int64_t> bits;
    int candidates;
  };
  // 77 rows: not a multiple of the kernel's 8 warps; gs 256 spans two panels.
  const std::vector<Case> cases = {{8, 128, {2}, 1},          {8, 128, {2, 1, 3}, 4}, {8, 256, {4, 2}, 4},
                                   {32, 128, {2, 3}, 4},      {32, 128, {1}, 1},      {16, 64, {5, 2}, 3},
                                   {64, 128, {2}, 16}};
  uint64_t seed = 7100;
  for (const Case& k : cases) {
    SCOPED_TRACE(testing::Message() << "d " << k.d << " gs " << k.gs << " candidates " << k.candidates);
    at::manual_seed(static_cast<int64_t>(seed++));
    const int64_t out = 77, in = 512, B = in / k.gs;
    const at::Tensor W = at::randn({out, in});
    const GlvqShapedParams p = random_params(B, k.d, k.bits);
    const at::Tensor D = random_metrics(in / k.d, k.d);
    const GlvqShapedCodes cpu = glvq_shaped_encode_layer(W, k.gs, p, at::Tensor(), false, D, k.candidates);
    const GlvqShapedCodes gpu =
        glvq_shaped_encode_layer(W.to(kGpu), k.gs, on_gpu(p), at::Tensor(), false, D.to(kGpu), k.candidates);
    ASSERT_TRUE(gpu.codes.is_cuda());
    EXPECT_TRUE(at::equal(gpu.codes.cpu(), cpu.codes))
        << (gpu.codes.cpu() != cpu.codes).sum().item<int64_t>() << " of " << cpu.codes.numel() << " codes differ";
    EXPECT_TRUE(at::equal(gpu.C.cpu(), cpu.C));
    EXPECT_TRUE(at::equal(gpu.W_hat.cpu(), cpu.W_hat));
    EXPECT_TRUE(at::equal(gpu.T.cpu(), cpu.T));
  }
}

TEST(GlvqShapedGpu, EncodeWithFeedbackMatchesCpuLosses) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 7200;
  for (int64_t d : {8, 32}) {
    for (int64_t gs : {128, 384}) {  // 384: one group of three panels (whole-row groups)
      SCOPED_TRACE(testing::Message() << "d " << d << " gs " << gs);
      at::manual_seed(static_cast<int64_t>(seed));
      const int64_t out = 96, in = 384, B = in / gs;
      const at::Tensor W = at::randn({out, in});
      const at::Tensor H = random_hessian(in, seed++);
      const at::Tensor U = glvq_inverse_cholesky(H, 0.01, "test");
      const at::Tensor F = glvq_feedback_matrix(U, d), D = glvq_feedback_metrics(U, d);
      const GlvqShapedParams p = random_params(B, d, {2, 3, 1});
      const GlvqShapedCodes cpu = glvq_shaped_encode_layer(W, gs, p, F, true, D, 4);
      const GlvqShapedCodes gpu =
          glvq_shaped_encode_layer(W.to(kGpu), gs, on_gpu(p), F.to(kGpu), true, D.to(kGpu), 4);
      const at::Tensor lc = glvq_shaped_group_losses(cpu, D, gs).to(at::kDouble);
      const at::Tensor lg = glvq_shaped_group_losses(gpu, D.to(kGpu), gs).cpu().to(at::kDouble);
      // The feedback sums round differently (kernel FMAs and cuBLAS against the CPU's BLAS),
      // so a near tie may fall the other way and change the rest of its row: the losses
      // agree as statistics, the codes almost everywhere.
      EXPECT_LE(((lg - lc).abs() / lc).max().item<double>(), 0.01) << lc << lg;
      const double same = (gpu.codes.cpu() == cpu.codes).to(at::kDouble).mean().item<double>();
      EXPECT_GE(same, 0.95);
      // The reconstruction is s G c of the returned codewords on both sides.
      const at::Tensor Tg = gpu.T.cpu(), Eg = Tg - gpu.W_hat.cpu();
      EXPECT_LE(Eg.abs().max().item<double>(), 10.0);
    }
  }
}

TEST(GlvqShapedGpu, LayerOnGpuMatchesCpu) {
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  at::manual_seed(7300);
  const int64_t out = 128, in = 256;
  const at::Tensor W = at::randn({out, in}) * 0.02;
  const at::Tensor H = random_hessian(in, 7301);
  GlvqOptions o;
  o.cfg.code = "shaped";
  o.cfg.dim = 8;
  o.cfg.group_size = 64;
  o.cfg.lloyd_iters = 3;
  o.cfg.candidates = 4;
  o.bits = 2.0;
  o.seed = 5;
  const QuantizedLinear cpu = glvq_quantize_layer(W, H, "test.layer", o);
  const QuantizedLinear gpu = glvq_quantize_layer(W.to(kGpu), H.to(kGpu), "test.layer", o);
  // Both losses are layer_loss of the stored arrays, decoded by the codec reference.
  EXPECT_NEAR(gpu.loss, cpu.loss, 0.02 * cpu.loss);
  EXPECT_NEAR(gpu.loss_init, cpu.loss_init, 0.02 * cpu.loss_init);
  EXPECT_LE(gpu.loss, gpu.loss_init);
  EXPECT_LT(gpu.loss, 0.5 * layer_loss(W, at::zeros_like(W), H));
}

}  // namespace
}  // namespace glvq
