#include "quant/glvq_hadamard.h"

#include <cmath>
#include <vector>

#include "common/error.h"

namespace glvq {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// n = m * 2^k with m odd.
void split_size(int64_t n, int64_t& m, int64_t& p) {
  GLVQ_ASSERT(n > 0);
  p = 1;
  while (n % (2 * p) == 0) p *= 2;
  m = n / p;
}

/// Orthonormal DCT-II matrix of size m (rows are the basis vectors), double.
at::Tensor dct_matrix(int64_t m, const at::TensorOptions& opt) {
  std::vector<double> c(static_cast<size_t>(m * m));
  const double pi = std::acos(-1.0);
  for (int64_t k = 0; k < m; ++k) {
    const double a = std::sqrt((k == 0 ? 1.0 : 2.0) / static_cast<double>(m));
    for (int64_t j = 0; j < m; ++j) c[k * m + j] = a * std::cos(pi * (j + 0.5) * k / static_cast<double>(m));
  }
  return at::from_blob(c.data(), {m, m}, at::TensorOptions().dtype(at::kDouble)).clone().to(opt);
}

/// Normalised Walsh-Hadamard transform along the last dimension (size p, a power of 2).
at::Tensor fwht(const at::Tensor& X, int64_t p) {
  const int64_t rows = X.numel() / p;
  at::Tensor x = X.reshape({rows, p});
  for (int64_t h = 1; h < p; h *= 2) {
    const at::Tensor v = x.view({rows, p / (2 * h), 2, h});
    const at::Tensor a = v.select(2, 0), b = v.select(2, 1);
    x = at::stack({a + b, a - b}, 2).view({rows, p});
  }
  return (x * (1.0 / std::sqrt(static_cast<double>(p)))).view(X.sizes());
}

/// K x (TRANSPOSE: K^T x) along the last dimension.
at::Tensor kron_apply(const at::Tensor& X, bool transpose) {
  const int64_t n = X.size(-1);
  int64_t m = 1, p = 1;
  split_size(n, m, p);
  at::Tensor x = fwht(X.contiguous(), p);  // H is symmetric: same either way
  if (m == 1) return x;
  const int64_t rows = X.numel() / n;
  at::Tensor C = dct_matrix(m, X.options());
  if (transpose) C = C.t();
  return at::matmul(C, x.reshape({rows, m, p})).reshape(X.sizes());
}

}  // namespace

at::Tensor glvq_random_signs(int64_t n, uint64_t seed) {
  at::Tensor s = at::empty({n}, at::TensorOptions().dtype(at::kFloat));
  float* p = s.data_ptr<float>();
  uint64_t state = seed;
  for (int64_t i = 0; i < n; ++i) p[i] = (splitmix64(state) >> 63) ? -1.0f : 1.0f;
  return s;
}

at::Tensor glvq_pack_signs(const at::Tensor& signs) {
  const at::Tensor s = signs.to(at::kCPU, at::kFloat).contiguous();
  const int64_t n = s.numel();
  at::Tensor out = at::zeros({(n + 7) / 8}, at::TensorOptions().dtype(at::kByte));
  const float* sp = s.data_ptr<float>();
  uint8_t* o = out.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i)
    if (sp[i] < 0) o[i / 8] = static_cast<uint8_t>(o[i / 8] | (1u << (i % 8)));
  return out;
}

at::Tensor glvq_unpack_signs(const at::Tensor& packed, int64_t n) {
  GLVQ_CHECK(packed.scalar_type() == at::kByte && packed.numel() == (n + 7) / 8,
             "a packed sign vector for {} signs must be uint8 [{}], got {} values", n, (n + 7) / 8, packed.numel());
  const at::Tensor pk = packed.to(at::kCPU).contiguous();
  at::Tensor s = at::empty({n}, at::TensorOptions().dtype(at::kFloat));
  const uint8_t* in = pk.data_ptr<uint8_t>();
  float* o = s.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) o[i] = ((in[i / 8] >> (i % 8)) & 1) ? -1.0f : 1.0f;
  return s;
}

at::Tensor glvq_orth_apply(const at::Tensor& X, const at::Tensor& signs) {
  GLVQ_ASSERT(X.size(-1) == signs.numel());
  return kron_apply(X * signs.to(X.device(), X.scalar_type()), /*transpose=*/false);
}

at::Tensor glvq_orth_apply_t(const at::Tensor& Y, const at::Tensor& signs) {
  GLVQ_ASSERT(Y.size(-1) == signs.numel());
  return kron_apply(Y, /*transpose=*/true) * signs.to(Y.device(), Y.scalar_type());
}

at::Tensor glvq_incoherent_weight(const at::Tensor& W, const at::Tensor& signs_out, const at::Tensor& signs_in) {
  // Rows: w_r -> T_in w_r; then columns: T_out applied to every column.
  const at::Tensor X = glvq_orth_apply(W, signs_in);
  return glvq_orth_apply(X.t(), signs_out).t().contiguous();
}

at::Tensor glvq_coherent_weight(const at::Tensor& Wp, const at::Tensor& signs_out, const at::Tensor& signs_in) {
  const at::Tensor X = glvq_orth_apply_t(Wp, signs_in);
  return glvq_orth_apply_t(X.t(), signs_out).t().contiguous();
}

at::Tensor glvq_incoherent_hessian(const at::Tensor& H, const at::Tensor& signs_in) {
  const at::Tensor X = glvq_orth_apply(H, signs_in);  // H T_in^T
  return glvq_orth_apply(X.t(), signs_in).t().contiguous();
}

}  // namespace glvq
