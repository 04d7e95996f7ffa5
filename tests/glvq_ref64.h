#pragma once
// Test-side fp64 references of the GLVQ box code, written from the format's
// description (quant/glvq_codec.h, quant/glvq_hadamard.h) as plain loops, so
// that a test can check what the library stored without the library's decoder.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "quant/quantizer.h"

namespace glvq {
namespace ref64 {

/// w' = sign(u) s ((1 + mu)^|u| - 1) / mu (mu > 0), s u (mu = 0).
inline double expand(double u, double s, double mu) {
  if (mu == 0) return s * u;
  const double w = s * (std::pow(1 + mu, std::abs(u)) - 1) / mu;
  return u < 0 ? -w : w;
}

/// Decodes the packed box codes of an [out, in] layer (groups of gs columns,
/// vectors of d) in double: every vector's d codes are b-bit unsigned values
/// z + 2^(b-1), LSB first, a vector padded to whole bytes, groups one after another.
inline at::Tensor decode(int64_t out, int64_t in, int64_t d, int64_t gs, const at::Tensor& codes,
                         const at::Tensor& bits, const at::Tensor& G, const at::Tensor& mu, const at::Tensor& scale) {
  const at::Tensor c = codes.to(at::kCPU).contiguous();
  const at::Tensor b8 = bits.to(at::kCPU).to(at::kLong).contiguous();
  const at::Tensor Gd = G.to(at::kCPU, at::kDouble).contiguous();
  const at::Tensor md = mu.to(at::kCPU, at::kDouble).contiguous(), sd = scale.to(at::kCPU, at::kDouble).contiguous();
  const uint8_t* cp = c.data_ptr<uint8_t>();
  at::Tensor W = at::zeros({out, in}, at::kDouble);
  auto w = W.accessor<double, 2>();
  int64_t byte = 0;
  for (int64_t g = 0; g < in / gs; ++g) {
    const int64_t b = b8.data_ptr<int64_t>()[g], vb = (d * b + 7) / 8;
    const double* Gg = Gd.data_ptr<double>() + g * d * d;
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t v = 0; v < gs / d; ++v, byte += vb) {
        std::vector<double> t(static_cast<size_t>(d));
        for (int64_t i = 0; i < d; ++i) {
          int64_t uz = 0;
          for (int64_t k = 0; k < b; ++k) {
            const int64_t bit = i * b + k;
            uz |= static_cast<int64_t>((cp[byte + bit / 8] >> (bit % 8)) & 1) << k;
          }
          t[i] = static_cast<double>(uz - (int64_t{1} << (b - 1))) + 0.5;
        }
        for (int64_t i = 0; i < d; ++i) {
          double u = 0;
          for (int64_t j = 0; j < d; ++j) u += Gg[i * d + j] * t[j];
          w[r][g * gs + v * d + i] = expand(u, sd.data_ptr<double>()[g], md.data_ptr<double>()[g]);
        }
      }
    }
  }
  EXPECT_EQ(byte, c.numel()) << "the codes array is not the size its layout says";
  return W;
}

/// The stored layer's transformed weight W'_hat, in double.
inline at::Tensor decode(const QuantizedLinear& q) {
  const auto& a = q.arrays;
  return decode(q.out, q.in, static_cast<int64_t>(q.attrs.at("dim")), static_cast<int64_t>(q.attrs.at("group_size")),
                a.at("codes"), a.at("bits"), a.at("G").to(at::kFloat), a.at("mu").to(at::kFloat),
                a.at("scale").to(at::kFloat));
}

/// T = K diag(signs) for n a power of two: K the Sylvester-ordered Walsh-Hadamard
/// matrix, K_ij = (-1)^popcount(i & j) / sqrt(n); the signs unpacked from PACKED
/// (bit i % 8 of byte i / 8 set = negative).
inline at::Tensor transform(const at::Tensor& packed, int64_t n) {
  EXPECT_EQ(n & (n - 1), 0) << "ref64::transform handles powers of two only";
  const at::Tensor pk = packed.to(at::kCPU).contiguous();
  at::Tensor T = at::empty({n, n}, at::kDouble);
  auto t = T.accessor<double, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double sign = ((pk.data_ptr<uint8_t>()[j / 8] >> (j % 8)) & 1) ? -1.0 : 1.0;
      t[i][j] = (__builtin_popcountll(static_cast<unsigned long long>(i & j)) % 2 ? -1.0 : 1.0) * sign /
                std::sqrt(static_cast<double>(n));
    }
  return T;
}

/// The stored layer's weight W_hat = T_out^T W'_hat T_in (W'_hat without incoherence), in double.
inline at::Tensor dequantize(const QuantizedLinear& q) {
  const at::Tensor Wp = decode(q);
  if (q.attrs.at("incoherence") == 0) return Wp;
  return at::mm(at::mm(transform(q.arrays.at("signs_out"), q.out).t(), Wp), transform(q.arrays.at("signs_in"), q.in));
}

/// tr(E H E^T), E = W - W_hat, in double.
inline double loss(const at::Tensor& W, const at::Tensor& W_hat, const at::Tensor& H) {
  const at::Tensor E = W.to(at::kDouble) - W_hat.to(at::kDouble);
  return (at::mm(E, H.to(at::kDouble)) * E).sum().item<double>();
}

}  // namespace ref64
}  // namespace glvq
