// RTN and GPTQ (the integer-grid baselines) and the shared quantizer helpers:
// bit accounting, dequantize dispatch, layer loss.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/error.h"
#include "quant/gptq.h"
#include "quant/quantizer.h"
#include "quant/rtn.h"

namespace glvq {
namespace {

/// Seeds ATen's default generator and says which seed a failing test used.
void seed_all(uint64_t seed) {
  at::manual_seed(seed);
  std::printf("[ seed     ] %llu\n", static_cast<unsigned long long>(seed));
}

QuantConfig make_qc(const std::string& method, double bits, int group_size = 128) {
  QuantConfig qc;
  qc.method = method;
  qc.bits = bits;
  qc.rtn.group_size = group_size;
  qc.gptq.group_size = group_size;
  return qc;
}

/// H = X^T X / n with X = N(0,1) [n, in] times a random mixing matrix: correlated inputs.
at::Tensor correlated_hessian(int64_t in, int64_t n) {
  at::Tensor M = at::randn({in, in}) / std::sqrt(static_cast<double>(in)) + 0.5 * at::eye(in);
  at::Tensor X = at::randn({n, in}).mm(M);
  return X.t().mm(X) / static_cast<double>(n);
}

/// One row's grid over N weights W, written out as a plain loop: the spec that rtn.cpp vectorizes.
struct NaiveGrid {
  float s, z;
};
NaiveGrid naive_grid(const float* w, int64_t n, int bits) {
  const float maxq = static_cast<float>((1 << bits) - 1);
  float lo = 0, hi = 0;
  for (int64_t j = 0; j < n; ++j) {
    lo = std::min(lo, w[j]);
    hi = std::max(hi, w[j]);
  }
  if (lo == 0 && hi == 0) lo = -1, hi = 1;
  float s = std::max((hi - lo) / maxq, std::ldexp(1.0f, -24));
  s = static_cast<float>(c10::Half(s));
  return {s, std::min(std::max(std::nearbyint(-lo / s), 0.0f), maxq)};
}

float naive_round(float w, NaiveGrid g, int bits) {
  const float maxq = static_cast<float>((1 << bits) - 1);
  const float q = std::min(std::max(std::nearbyint(w / g.s) + g.z, 0.0f), maxq);
  return g.s * (q - g.z);
}

/// RTN as a plain loop. Groups are gs columns, the last one whatever is left of the row.
at::Tensor naive_rtn(const at::Tensor& W, int bits, int64_t gs) {
  const int64_t out = W.size(0), in = W.size(1);
  at::Tensor Wc = W.contiguous();
  at::Tensor R = at::empty({out, in});
  const float* w = Wc.data_ptr<float>();
  float* r = R.data_ptr<float>();
  for (int64_t i = 0; i < out; ++i) {
    for (int64_t g0 = 0; g0 < in; g0 += gs) {
      const int64_t g1 = std::min(in, g0 + gs);
      const NaiveGrid g = naive_grid(w + i * in + g0, g1 - g0, bits);
      for (int64_t j = g0; j < g1; ++j) r[i * in + j] = naive_round(w[i * in + j], g, bits);
    }
  }
  return R;
}

/// A stored integer-grid layer (RTN/GPTQ format) decoded by hand in double:
/// row r's codes are b-bit values LSB first, w = (q - zero) * scale per group.
at::Tensor naive_grid_decode(const QuantizedLinear& L) {
  const int64_t out = L.out, in = L.in, bits = static_cast<int64_t>(L.attrs.at("bits"));
  const int64_t gs = static_cast<int64_t>(L.attrs.at("group_size")), row_bytes = (in * bits + 7) / 8;
  const at::Tensor c = L.arrays.at("codes").contiguous();
  const at::Tensor S = L.arrays.at("scale").to(at::kDouble), Z = L.arrays.at("zero").to(at::kDouble);
  auto s = S.accessor<double, 2>(), z = Z.accessor<double, 2>();
  at::Tensor W = at::empty({out, in}, at::kDouble);
  auto w = W.accessor<double, 2>();
  for (int64_t r = 0; r < out; ++r)
    for (int64_t j = 0; j < in; ++j) {
      int64_t q = 0;
      for (int64_t k = 0; k < bits; ++k) {
        const int64_t bit = j * bits + k;
        q |= static_cast<int64_t>((c.data_ptr<uint8_t>()[r * row_bytes + bit / 8] >> (bit % 8)) & 1) << k;
      }
      const int64_t g = j / gs;
      w[r][j] = (static_cast<double>(q) - z[r][g]) * s[r][g];
    }
  return W;
}

/// tr(E H E^T) in double by plain sums, E = W - W_hat.
double naive_loss(const at::Tensor& W, const at::Tensor& W_hat, const at::Tensor& H) {
  const at::Tensor E = (W.to(at::kDouble) - W_hat.to(at::kDouble)).contiguous(), Hd = H.to(at::kDouble).contiguous();
  const int64_t out = E.size(0), in = E.size(1);
  const double* e = E.data_ptr<double>();
  const double* h = Hd.data_ptr<double>();
  double sum = 0;
  for (int64_t r = 0; r < out; ++r)
    for (int64_t i = 0; i < in; ++i) {
      double hi = 0;
      for (int64_t j = 0; j < in; ++j) hi += h[i * in + j] * e[r * in + j];
      sum += e[r * in + i] * hi;
    }
  return sum;
}

/// GPTQ written out without lazy batches: after each column, every later column
/// takes its share of the error at once, in double (the blocked float version
/// must agree up to rounding). Static groups (act-order) take each group's grid
/// from the original W; dynamic ones (no act-order) from the group's columns as
/// they stand when its first column comes up. The last group may be narrower.
at::Tensor naive_gptq(const at::Tensor& W, const at::Tensor& H, int bits, int64_t gs, double damp,
                      bool dynamic = false) {
  const int64_t out = W.size(0), in = W.size(1);
  at::Tensor Wd = W.to(at::kDouble).contiguous(), Hd = H.to(at::kDouble).contiguous();
  for (int64_t i = 0; i < in; ++i) {
    if (Hd[i][i].item<double>() == 0) {
      Hd[i][i] = 1.0;
      Wd.select(1, i).zero_();
    }
  }
  const int64_t groups = (in + gs - 1) / gs;
  std::vector<NaiveGrid> grid(static_cast<size_t>(out * groups));
  auto grid_from = [&](const double* w, int64_t r, int64_t g, int64_t stride) {
    const int64_t g0 = g * gs, g1 = std::min(in, g0 + gs);
    std::vector<float> row;
    for (int64_t j = g0; j < g1; ++j) row.push_back(static_cast<float>(w[r * stride + j]));
    grid[r * groups + g] = naive_grid(row.data(), g1 - g0, bits);
  };
  if (!dynamic)
    for (int64_t r = 0; r < out; ++r)
      for (int64_t g = 0; g < groups; ++g) grid_from(Wd.data_ptr<double>(), r, g, in);
  std::vector<int64_t> perm(in);
  for (int64_t i = 0; i < in; ++i) perm[i] = i;
  std::vector<double> dg(in);
  for (int64_t i = 0; i < in; ++i) dg[i] = Hd[i][i].item<double>();
  if (!dynamic) std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return dg[a] > dg[b]; });
  at::Tensor P = at::zeros({in, in}, at::kDouble);
  for (int64_t j = 0; j < in; ++j) P[perm[j]][j] = 1.0;
  at::Tensor Hp = P.t().mm(Hd).mm(P);
  Hp += damp * Hp.diagonal().mean() * at::eye(in, at::kDouble);
  at::Tensor U = at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(Hp)), /*upper=*/true).contiguous();
  at::Tensor Wp = Wd.mm(P).contiguous();
  at::Tensor R = at::empty({out, in});
  double* w = Wp.data_ptr<double>();
  const double* u = U.data_ptr<double>();
  float* rp = R.data_ptr<float>();
  for (int64_t j = 0; j < in; ++j) {
    const int64_t col = perm[j], g = col / gs;
    for (int64_t r = 0; r < out; ++r) {
      if (dynamic && col % gs == 0) grid_from(w, r, g, in);  // no permutation: column order = quantization order
      const float wq = naive_round(static_cast<float>(w[r * in + j]), grid[r * groups + g], bits);
      rp[r * in + col] = wq;
      const double err = (w[r * in + j] - wq) / u[j * in + j];
      for (int64_t k = j; k < in; ++k) w[r * in + k] -= err * u[j * in + k];
    }
  }
  return R;
}

TEST(QuantBaselines, RtnMatchesNaiveLoop) {
  seed_all(11);
  for (int bits : {1, 2, 3, 4, 8}) {
    for (int64_t gs : {int64_t{32}, int64_t{128}}) {
      SCOPED_TRACE("bits " + std::to_string(bits) + " group_size " + std::to_string(gs));
      at::Tensor W = at::randn({24, 256}) * 0.02;
      W.select(0, 3).zero_();            // flat row: grid [-1, 1]
      W.select(0, 5).abs_();             // all >= 0: range widened down to 0
      W.select(0, 7).mul_(1e-9);         // scale below fp16's normal range
      auto qz = make_quantizer(make_qc("rtn", bits, static_cast<int>(gs)), 0);
      QuantizedLinear L = qz->quantize(W, at::eye(256), "layers.0.mlp.up_proj");
      EXPECT_EQ(L.method, "rtn");
      EXPECT_EQ(L.attrs.at("bits"), bits);
      EXPECT_EQ(L.attrs.at("group_size"), gs);
      at::Tensor W_hat = dequantize(L);
      ASSERT_EQ(W_hat.sizes(), W.sizes());
      const at::Tensor ref = naive_rtn(W, bits, gs);
      EXPECT_TRUE(at::equal(W_hat, ref));
      // H = I: the loss is the squared error; RTN is its own starting point.
      const double ref_loss = (W.to(at::kDouble) - ref.to(at::kDouble)).pow(2).sum().item<double>();
      EXPECT_NEAR(L.loss, ref_loss, 1e-9 * (1 + ref_loss));
      EXPECT_NEAR(L.loss_init, ref_loss, 1e-9 * (1 + ref_loss));
    }
  }
}

TEST(QuantBaselines, CodesRoundTrip) {
  seed_all(12);
  for (int bits = 1; bits <= 8; ++bits) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    at::Tensor q = at::randint(0, 1 << bits, {5, 37}, at::TensorOptions().dtype(at::kByte));
    at::Tensor codes = grid_pack_codes(q, bits);
    EXPECT_EQ(codes.scalar_type(), at::kByte);
    EXPECT_EQ(codes.size(0), 5);
    EXPECT_EQ(codes.size(1), (37 * bits + 7) / 8);
    EXPECT_TRUE(at::equal(grid_unpack_codes(codes, 5, 37, bits), q));
  }
  // The layout itself: 3-bit codes 5, 3, 7 LSB first -> 101 110 11|1 -> bytes 0xDD, 0x01.
  std::vector<uint8_t> v = {5, 3, 7};
  at::Tensor q = at::from_blob(v.data(), {1, 3}, at::TensorOptions().dtype(at::kByte)).clone();
  at::Tensor codes = grid_pack_codes(q, 3);
  ASSERT_EQ(codes.numel(), 2);
  EXPECT_EQ(codes.data_ptr<uint8_t>()[0], 0xDD);
  EXPECT_EQ(codes.data_ptr<uint8_t>()[1], 0x01);
}

TEST(QuantBaselines, CountBitsIsStoredBytes) {
  seed_all(13);
  for (int bits : {2, 3, 4}) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    at::Tensor W = at::randn({64, 384});
    QuantizedLinear L = make_quantizer(make_qc("rtn", bits), 0)->quantize(W, at::eye(384), "layers.0.self_attn.q_proj");
    BitsBreakdown b = count_bits(L);
    double stored = 0;
    for (const auto& [name, t] : L.arrays) stored += static_cast<double>(t.numel() * t.element_size()) * 8;
    EXPECT_DOUBLE_EQ(b.total(), stored / (64.0 * 384.0));
    EXPECT_EQ(b.weights, 64 * 384);
    EXPECT_DOUBLE_EQ(b.codes, bits);  // 384 * bits is a whole number of bytes
    EXPECT_DOUBLE_EQ(b.scales, 0.25);
    EXPECT_DOUBLE_EQ(b.total(), bits + 0.25);
    EXPECT_EQ(b.lattice + b.companding + b.bitmap + b.transform + b.other, 0.0);
  }
}

TEST(QuantBaselines, BitsRoleAndWeightedSum) {
  EXPECT_EQ(bits_role("codes"), "codes");
  EXPECT_EQ(bits_role("codes_hi"), "codes");
  EXPECT_EQ(bits_role("G"), "lattice");
  EXPECT_EQ(bits_role("Ginv"), "lattice");
  EXPECT_EQ(bits_role("mu"), "companding");
  EXPECT_EQ(bits_role("scale"), "scales");
  EXPECT_EQ(bits_role("zero"), "scales");
  EXPECT_EQ(bits_role("bits"), "bitmap");
  EXPECT_EQ(bits_role("signs_in"), "transform");
  EXPECT_EQ(bits_role("perm"), "transform");
  EXPECT_EQ(bits_role("bias"), "other");

  BitsBreakdown a, b;
  a.codes = 2, a.scales = 0.25, a.weights = 100;
  b.codes = 4, b.lattice = 1, b.weights = 300;
  BitsBreakdown sum;
  sum += a;
  sum += b;
  EXPECT_EQ(sum.weights, 400);
  EXPECT_DOUBLE_EQ(sum.codes, 3.5);
  EXPECT_DOUBLE_EQ(sum.scales, 0.0625);
  EXPECT_DOUBLE_EQ(sum.lattice, 0.75);
  EXPECT_DOUBLE_EQ(sum.total(), (a.total() * 100 + b.total() * 300) / 400);
}

TEST(QuantBaselines, LayerLossIsTraceEHEt) {
  seed_all(14);
  at::Tensor W = at::randn({7, 9}), W_hat = at::randn({7, 9}), H = correlated_hessian(9, 50);
  at::Tensor E = W.to(at::kDouble) - W_hat.to(at::kDouble), Hd = H.to(at::kDouble);
  double ref = 0;
  for (int64_t r = 0; r < 7; ++r)
    for (int64_t i = 0; i < 9; ++i)
      for (int64_t j = 0; j < 9; ++j)
        ref += E[r][i].item<double>() * Hd[i][j].item<double>() * E[r][j].item<double>();
  EXPECT_NEAR(layer_loss(W, W_hat, H), ref, 1e-9 * std::abs(ref));
}

TEST(QuantBaselines, GptqBeatsRtnOnCorrelatedH) {
  seed_all(15);
  const int64_t out = 96, in = 256;
  at::Tensor W = at::randn({out, in});
  at::Tensor H = correlated_hessian(in, 4 * in);
  for (int bits : {2, 3, 4}) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    QuantizedLinear r = make_quantizer(make_qc("rtn", bits), 0)->quantize(W, H, "layers.1.mlp.down_proj");
    QuantizedLinear g = make_quantizer(make_qc("gptq", bits), 0)->quantize(W, H, "layers.1.mlp.down_proj");
    std::printf("[ loss     ] bits %d: rtn %.4g gptq %.4g (ratio %.3f)\n", bits, r.loss, g.loss, g.loss / r.loss);
    EXPECT_EQ(g.method, "gptq");
    EXPECT_LT(g.loss, 0.9 * r.loss);
    // loss_init is RTN's loss, loss that of the stored codes: both against plain fp64 sums.
    const double rtn_ref = naive_loss(W, naive_rtn(W, bits, 128), H);
    EXPECT_NEAR(g.loss_init, rtn_ref, 1e-9 * rtn_ref);
    const double gptq_ref = naive_loss(W, naive_grid_decode(g), H);
    EXPECT_NEAR(g.loss, gptq_ref, 1e-9 * gptq_ref);
    // Same format as RTN: same arrays, shapes and dtypes, so the same bits.
    EXPECT_DOUBLE_EQ(count_bits(g).total(), count_bits(r).total());
  }
}

TEST(QuantBaselines, GptqMatchesUnblockedLoop) {
  seed_all(20);
  const int64_t out = 24, in = 384;  // three lazy blocks
  at::Tensor W = at::randn({out, in});
  at::Tensor H = correlated_hessian(in, 2 * in);
  H.select(0, 100).zero_();
  H.select(1, 100).zero_();
  for (int bits : {2, 4}) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    QuantizedLinear g = make_quantizer(make_qc("gptq", bits), 0)->quantize(W, H, "l");
    at::Tensor ref = naive_gptq(W, H, bits, 128, 0.01);
    at::Tensor W_hat = dequantize(g);
    const double mismatch = (W_hat != ref).to(at::kDouble).mean().item<double>();
    const double ref_loss = layer_loss(W, ref, H);
    std::printf("[ ref      ] bits %d: codes differing %.4f%%, loss %.6g vs unblocked %.6g\n", bits, 100 * mismatch,
                g.loss, ref_loss);
    EXPECT_LT(mismatch, 0.01);
    EXPECT_NEAR(g.loss, ref_loss, 0.01 * ref_loss);
  }
}

TEST(QuantBaselines, GptqDynamicGroupsBeatRtn) {
  seed_all(16);
  at::Tensor W = at::randn({32, 256});
  at::Tensor H = correlated_hessian(256, 1024);
  QuantConfig qc = make_qc("gptq", 3, 64);
  qc.gptq.act_order = false;
  qc.gptq.static_groups = false;
  QuantizedLinear g = make_quantizer(qc, 0)->quantize(W, H, "layers.0.self_attn.o_proj");
  EXPECT_LT(g.loss, 0.9 * g.loss_init);
  // act-order with dynamic groups cannot be stored in the original group order.
  qc.gptq.act_order = true;
  EXPECT_THROW(make_quantizer(qc, 0), UsageError);
}

TEST(QuantBaselines, GptqWithIdentityHIsRtn) {
  seed_all(17);
  at::Tensor W = at::randn({48, 256});
  for (int bits : {2, 4}) {
    SCOPED_TRACE("bits " + std::to_string(bits));
    // H = I (damped: 1.01 I) has no off-diagonal to carry errors, and every column
    // ties in act-order: GPTQ must store exactly RTN's weights.
    for (double damp : {0.01, 0.0}) {
      QuantConfig qc = make_qc("gptq", bits);
      qc.gptq.damp = damp;
      QuantizedLinear g = make_quantizer(qc, 0)->quantize(W, at::eye(256), "l");
      EXPECT_TRUE(at::equal(dequantize(g), naive_rtn(W, bits, 128))) << "damp " << damp;
      EXPECT_EQ(g.loss, g.loss_init) << "damp " << damp;
    }
  }
}

TEST(QuantBaselines, GptqDeadColumns) {
  seed_all(18);
  at::Tensor W = at::randn({16, 128});
  at::Tensor H = correlated_hessian(128, 512);
  for (int64_t c : {0, 5, 77}) {  // input c never fires
    H.select(0, c).zero_();
    H.select(1, c).zero_();
  }
  QuantizedLinear g = make_quantizer(make_qc("gptq", 3), 0)->quantize(W, H, "l");
  EXPECT_TRUE(std::isfinite(g.loss));
  EXPECT_LT(g.loss, g.loss_init);
  at::Tensor W_hat = dequantize(g);
  for (int64_t c : {0, 5, 77}) EXPECT_EQ(W_hat.select(1, c).abs().max().item<float>(), 0.0f);
}

TEST(QuantBaselines, GptqIsDeterministic) {
  seed_all(19);
  at::Tensor W = at::randn({64, 256});
  at::Tensor H = correlated_hessian(256, 1024);
  auto qz = make_quantizer(make_qc("gptq", 3), 0);
  QuantizedLinear a = qz->quantize(W, H, "l");
  QuantizedLinear b = make_quantizer(make_qc("gptq", 3), 0)->quantize(W, H, "l");
  ASSERT_EQ(a.arrays.size(), b.arrays.size());
  for (const auto& [name, t] : a.arrays) EXPECT_TRUE(at::equal(t, b.arrays.at(name))) << name;
  EXPECT_EQ(a.loss, b.loss);
}

TEST(QuantBaselines, RefusesFractionalBits) {
  for (const char* method : {"rtn", "gptq"}) {
    try {
      make_quantizer(make_qc(method, 2.5), 0);
      ADD_FAILURE() << method << " accepted bits = 2.5";
    } catch (const UsageError& e) {
      EXPECT_NE(e.message().find("2.5"), std::string::npos) << e.message();
      EXPECT_NE(e.message().find("integer"), std::string::npos) << e.message();
    }
  }
  EXPECT_THROW(make_quantizer(make_qc("rtn", 9), 0), UsageError);
  EXPECT_THROW(make_quantizer(make_qc("none", 4), 0), UsageError);
  EXPECT_THROW(make_quantizer(make_qc("awq", 4), 0), UsageError);
}

// Widths of real Llama-family projections that 128 does not divide (SmolLM2-360M
// 960, OpenLLaMA-3B 8640, a tiny model's 688), a head_dim-like 100 and a 5.
const std::vector<int64_t> kOddWidths = {688, 960, 8640, 100, 5};

/// Bits of the stored arrays per weight, counted here from the format's sizes.
double expected_grid_bits(int64_t out, int64_t in, int bits, int64_t gs) {
  const int64_t groups = (in + gs - 1) / gs;
  const double code_bytes = static_cast<double>(out * ((in * bits + 7) / 8));
  const double scale_zero_bytes = static_cast<double>(out * groups * 2 * 2);
  return (code_bytes + scale_zero_bytes) * 8 / static_cast<double>(out * in);
}

TEST(QuantBaselines, RtnAnyWidthMatchesNaiveLoop) {
  seed_all(21);
  for (int64_t in : kOddWidths) {
    for (int gs : {128, 32, 0}) {
      for (int bits : {2, 3, 4}) {
        SCOPED_TRACE("in " + std::to_string(in) + " group_size " + std::to_string(gs) + " bits " +
                     std::to_string(bits));
        const int64_t out = 6, g = gs == 0 ? in : gs;
        at::Tensor W = at::randn({out, in}) * 0.02;
        W.select(0, 2).zero_();
        // The quantizer's own entry point where H is cheap; at 8640 an identity H alone
        // would be 300 MB and its loss the test's whole cost, so the weight path directly.
        QuantizedLinear L = in > 1000 ? rtn_quantize_weight(W, bits, g)
                                      : make_quantizer(make_qc("rtn", bits, gs), 0)->quantize(W, at::eye(in), "l");
        EXPECT_EQ(L.attrs.at("group_size"), g);
        EXPECT_EQ(L.arrays.at("scale").size(1), (in + g - 1) / g);
        at::Tensor W_hat = dequantize(L);
        ASSERT_EQ(W_hat.sizes(), W.sizes());
        EXPECT_TRUE(at::equal(W_hat, naive_rtn(W, bits, g)));
        // Bits: every stored byte over the true number of weights.
        EXPECT_DOUBLE_EQ(count_bits(L).total(), expected_grid_bits(out, in, bits, g));
        EXPECT_EQ(count_bits(L).weights, out * in);
      }
    }
  }
}

TEST(QuantBaselines, GptqAnyWidthMatchesUnblockedLoop) {
  seed_all(22);
  for (int64_t in : kOddWidths) {
    if (in > 1000) continue;  // 8640: DISABLED_GptqWideLayerNarrowLastGroup (its Cholesky costs minutes)
    for (int gs : {128, 32}) {
      SCOPED_TRACE("in " + std::to_string(in) + " group_size " + std::to_string(gs));
      const int64_t out = 16;
      at::Tensor W = at::randn({out, in});
      at::Tensor H = correlated_hessian(in, 2 * in + 8);
      QuantizedLinear g = make_quantizer(make_qc("gptq", 3, gs), 0)->quantize(W, H, "l");
      at::Tensor W_hat = dequantize(g);
      ASSERT_EQ(W_hat.sizes(), W.sizes());
      const at::Tensor ref = naive_gptq(W, H, 3, gs, 0.01);
      const double mismatch = (W_hat != ref).to(at::kDouble).mean().item<double>();
      const double ref_loss = layer_loss(W, ref, H);
      std::printf("[ ref      ] in %lld gs %d: codes differing %.4f%%, loss %.6g vs unblocked %.6g (rtn %.6g)\n",
                  static_cast<long long>(in), gs, 100 * mismatch, g.loss, ref_loss, g.loss_init);
      EXPECT_LT(mismatch, 0.01);
      EXPECT_NEAR(g.loss, ref_loss, 0.01 * ref_loss);
      EXPECT_LE(g.loss, g.loss_init);
      EXPECT_DOUBLE_EQ(count_bits(g).total(), expected_grid_bits(out, in, 3, gs));
    }
  }
}

TEST(QuantBaselines, GptqDynamicGroupsNarrowLastGroup) {
  seed_all(23);
  for (int64_t in : {int64_t{688}, int64_t{100}, int64_t{5}}) {
    SCOPED_TRACE("in " + std::to_string(in));
    at::Tensor W = at::randn({12, in});
    at::Tensor H = correlated_hessian(in, 2 * in + 8);
    QuantConfig qc = make_qc("gptq", 3, 64);
    qc.gptq.act_order = false;
    qc.gptq.static_groups = false;
    QuantizedLinear g = make_quantizer(qc, 0)->quantize(W, H, "l");
    const at::Tensor ref = naive_gptq(W, H, 3, 64, 0.01, /*dynamic=*/true);
    const double mismatch = (dequantize(g) != ref).to(at::kDouble).mean().item<double>();
    EXPECT_LT(mismatch, 0.01);
    EXPECT_NEAR(g.loss, layer_loss(W, ref, H), 0.01 * g.loss);
  }
}

// OpenLLaMA-3B's down_proj width: 67 groups of 128 and a last one of 64. Disabled in the
// suite: its two 8640 x 8640 Cholesky factorizations (test and reference) take minutes on
// 2 cores; GptqAnyWidthMatchesUnblockedLoop covers the same group structure at 960
// (7 x 128 + 64). Run it with --gtest_also_run_disabled_tests.
TEST(QuantBaselines, DISABLED_GptqWideLayerNarrowLastGroup) {
  seed_all(24);
  const int64_t out = 3, in = 8640;
  at::Tensor W = at::randn({out, in});
  const at::Tensor X = at::randn({64, in});
  const at::Tensor H = X.t().mm(X) / 64.0 + 0.1 * at::eye(in);
  QuantizedLinear g = make_quantizer(make_qc("gptq", 4), 0)->quantize(W, H, "model.layers.0.mlp.down_proj.weight");
  const at::Tensor ref = naive_gptq(W, H, 4, 128, 0.01);
  const at::Tensor W_hat = dequantize(g);
  const double mismatch = (W_hat != ref).to(at::kDouble).mean().item<double>();
  EXPECT_LT(mismatch, 0.01);
  EXPECT_NEAR(g.loss, layer_loss(W, ref, H), 0.01 * g.loss);
  EXPECT_EQ(g.arrays.at("scale").size(1), 68);
  EXPECT_DOUBLE_EQ(count_bits(g).total(), expected_grid_bits(out, in, 4, 128));
}

TEST(QuantBaselines, GroupSizeZeroIsWholeRows) {
  for (const char* method : {"rtn", "gptq"}) {
    at::Tensor W = at::randn({8, 200});
    QuantizedLinear L = make_quantizer(make_qc(method, 4, 0), 0)->quantize(W, at::eye(200), "l");
    EXPECT_EQ(L.attrs.at("group_size"), 200) << method;
    EXPECT_EQ(L.arrays.at("scale").size(1), 1) << method;
    EXPECT_TRUE(at::equal(dequantize(L), naive_rtn(W, 4, 200))) << method;  // H = I: GPTQ is RTN
  }
}

TEST(QuantBaselines, GridDequantizeChecksGroupCount) {
  QuantizedLinear L = make_quantizer(make_qc("rtn", 4, 128), 0)->quantize(at::randn({4, 200}), at::eye(200), "l");
  ASSERT_EQ(L.arrays.at("scale").size(1), 2);
  QuantizedLinear bad = L;
  bad.arrays["scale"] = bad.arrays["scale"].narrow(1, 0, 1).contiguous();  // what a gs | in reader would expect
  EXPECT_THROW(dequantize(bad), Error);
}

TEST(QuantBaselines, DequantizeChecksArrays) {
  QuantizedLinear L = make_quantizer(make_qc("rtn", 4), 0)->quantize(at::ones({4, 128}), at::eye(128), "l");
  QuantizedLinear bad = L;
  bad.arrays.erase("zero");
  EXPECT_THROW(dequantize(bad), Error);
  bad = L;
  bad.method = "lloyd";
  EXPECT_THROW(dequantize(bad), Error);
}

}  // namespace
}  // namespace glvq
