// Rounding onto the coset G(Z^d + 1/2): the tensor path agrees with the codec
// reference, and nearest-plane is never worse on average than rounding-off.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "quant/glvq_codec.h"
#include "quant/glvq_encode.h"
#include "quant/glvq_group_ops.h"

namespace glvq {
namespace {

at::Tensor skewed_bases(int64_t B, int64_t d, at::Generator& gen) {
  // Lower-triangular with strong off-diagonal terms (far from orthogonal) and a
  // diagonal in [0.5, 1] (well conditioned enough for the 8-bit box).
  const at::Tensor diag = at::diag_embed(0.5 + 0.5 * at::rand({B, d}, gen));
  return at::randn({B, d, d}, gen).tril(-1) * (1.2 / std::sqrt(static_cast<double>(d))) + diag;
}

TEST(GlvqRounding, NearestPlaneIsNeverWorseOnAverage) {
  // For targets spread uniformly over many lattice cells, rounding-off's error
  // is uniform on the parallelepiped of G's columns (second moment sum ||g_i||^2/12)
  // and nearest-plane's on the box of their Gram-Schmidt vectors (sum ||g*_i||^2/12,
  // ||g*_i|| <= ||g_i||): nearest-plane can lose on a single vector, never on average.
  for (uint64_t seed : {11, 12, 13}) {
    std::printf("seed %lu\n", static_cast<unsigned long>(seed));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    for (int64_t d : {2, 8, 16}) {
      const int64_t B = 4, M = 20000;
      const at::Tensor G = skewed_bases(B, d, gen);
      const at::Tensor bits = at::full({B}, 8, at::kLong);  // clamp never reached
      const at::Tensor U = (at::rand({B, M, d}, gen) - 0.5) * 6;
      const GlvqRounder ro = glvq_make_rounder(G, bits, "babai"), np = glvq_make_rounder(G, bits, "nearest_plane");
      const at::Tensor Zr = glvq_round(U, ro), Zn = glvq_round(U, np);
      ASSERT_LT(at::maximum(Zr.abs(), Zn.abs()).max().item<float>(), 127);
      const at::Tensor er = (U - glvq_lattice_point(Zr, G)).square().sum(2).mean(1);
      const at::Tensor en = (U - glvq_lattice_point(Zn, G)).square().sum(2).mean(1);
      for (int64_t b = 0; b < B; ++b) {
        EXPECT_LE(en[b].item<double>(), er[b].item<double>()) << "d " << d << " basis " << b;
      }
      // With an orthogonal basis the two coincide exactly.
      const at::Tensor Q = std::get<0>(at::linalg_qr(G)) * 0.7;
      const at::Tensor a = glvq_round(U, glvq_make_rounder(Q, bits, "babai"));
      const at::Tensor c = glvq_round(U, glvq_make_rounder(Q, bits, "nearest_plane"));
      EXPECT_LT((a != c).to(at::kFloat).mean().item<float>(), 1e-4);
    }
  }
}

TEST(GlvqRounding, ClampKeepsCodesInRange) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(21);
  const at::Tensor G = skewed_bases(3, 8, gen);
  const at::Tensor bits = at::tensor({1L, 2L, 3L});
  const at::Tensor U = at::randn({3, 1000, 8}, gen) * 50;
  for (const char* mode : {"babai", "nearest_plane"}) {
    const at::Tensor Z = glvq_round(U, glvq_make_rounder(G, bits, mode));
    for (int64_t b = 0; b < 3; ++b) {
      const double half = std::ldexp(1.0, static_cast<int>(b));
      EXPECT_EQ(Z[b].min().item<double>(), -half) << mode;
      EXPECT_EQ(Z[b].max().item<double>(), half - 1) << mode;
    }
  }
}

TEST(GlvqRounding, TensorPathMatchesTheCodecReference) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(31);
  const int64_t out = 64, gs = 32, d = 8, B = 3;
  const at::Tensor W = at::randn({out, B * gs}, gen) * 0.05;
  for (bool companding : {false, true}) {
    GlvqParams p{skewed_bases(B, d, gen) * 0.3, companding ? at::tensor({20.f, 60.f, 200.f}) : at::zeros({B}),
                 at::tensor({0.1f, 0.2f, 0.15f}), at::tensor({2L, 3L, 4L})};
    p.G = p.G.to(at::kHalf).to(at::kFloat);
    const GlvqRounder r = glvq_make_rounder(p.G, p.bits, "babai");
    const GlvqGroupCodes c = glvq_quantize_groups(glvq_group_view(W, gs), p, companding, r, at::Tensor());
    // The reference on the same parameters.
    GlvqLayout L{out, B * gs, static_cast<int>(d), static_cast<int>(gs)};
    const at::Tensor bits8 = p.bits.to(at::kByte).contiguous();
    const at::Tensor Ginv = at::linalg_inv(p.G.to(at::kDouble)).to(at::kFloat).contiguous();
    const at::Tensor G = p.G.contiguous(), s = p.scale.contiguous(), mu = p.mu.contiguous();
    const GlvqGroupParams gp{bits8.data_ptr<uint8_t>(), s.data_ptr<float>(), mu.data_ptr<float>(), G.data_ptr<float>(),
                             Ginv.data_ptr<float>()};
    const std::vector<int64_t> off = glvq_group_offsets(L, gp.bits);
    std::vector<uint8_t> codes(off.back());
    glvq_encode_ref(L, gp, W.contiguous().data_ptr<float>(), codes.data());
    at::Tensor ref = at::empty({out, B * gs});
    glvq_decode_ref(L, gp, codes.data(), ref.data_ptr<float>());
    // Codes: equal but for float-order ties; the decoded weights to float precision where equal.
    const at::Tensor W_hat = glvq_group_unview(c.W_hat);
    const at::Tensor same = (W_hat - ref).abs() <= 1e-5 * (ref.abs() + 1e-3);
    EXPECT_GT(same.to(at::kFloat).mean().item<float>(), 0.999) << "companding " << companding;
  }
}

TEST(GlvqRounding, ParallelReferenceIsTheSerialReference) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(32);
  const int64_t out = 600, gs = 48, d = 8, B = 3;  // 600 rows: two full row blocks and a partial one
  const at::Tensor W = (at::randn({out, B * gs}, gen) * 0.05).contiguous();
  const at::Tensor G = (skewed_bases(B, d, gen) * 0.3).contiguous();
  const at::Tensor Ginv = at::linalg_inv(G.to(at::kDouble)).to(at::kFloat).contiguous();
  const at::Tensor s = at::tensor({0.1f, 0.2f, 0.15f}), mu = at::tensor({0.f, 60.f, 200.f});
  const at::Tensor bits = at::tensor({1, 3, 8}, at::kByte);
  const GlvqGroupParams p{bits.data_ptr<uint8_t>(), s.data_ptr<float>(), mu.data_ptr<float>(), G.data_ptr<float>(),
                          Ginv.data_ptr<float>()};
  const GlvqLayout L{out, B * gs, static_cast<int>(d), static_cast<int>(gs)};
  const int64_t bytes = glvq_group_offsets(L, p.bits).back();
  std::vector<uint8_t> serial(bytes), parallel(bytes, 0xAB);
  glvq_encode_ref(L, p, W.data_ptr<float>(), serial.data());
  glvq_encode_ref_parallel(L, p, W.data_ptr<float>(), parallel.data());
  EXPECT_EQ(serial, parallel);
  at::Tensor a = at::empty({out, B * gs}), b = at::full({out, B * gs}, 7.f);
  glvq_decode_ref(L, p, serial.data(), a.data_ptr<float>());
  glvq_decode_ref_parallel(L, p, serial.data(), b.data_ptr<float>());
  EXPECT_TRUE(at::equal(a, b));
}

}  // namespace
}  // namespace glvq
