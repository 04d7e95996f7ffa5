#pragma once
/// The randomized orthogonal transform behind GLVQ's incoherence option.
///
/// For a size n = m * 2^k (m odd) the transform is T = K D with D = diag(signs),
/// signs in {-1, +1}^n from a seed, and K = C_m (x) H_{2^k}: H_{2^k} the
/// normalised (orthonormal, symmetric) Walsh-Hadamard matrix and C_m the
/// orthonormal DCT-II matrix of size m (C_1 = [1]). Index i = a * 2^k + b
/// (a < m, b < 2^k). K is orthogonal with entries of magnitude <= sqrt(2/n),
/// so it spreads any coordinate over all n. Only the signs are stored.
///
/// On a layer: W' = T_out W T_in^T and H' = T_in H T_in^T, so that
/// tr(E H E^T) = tr(E' H' E'^T); dequantization applies W = T_out^T W' T_in.
#include <ATen/ATen.h>

#include <cstdint>

namespace glvq {

/// n signs (float, +-1, CPU) from SEED by splitmix64 (same on every platform).
at::Tensor glvq_random_signs(int64_t n, uint64_t seed);
/// Packs signs (+-1, any float dtype/device) into uint8 [ceil(n/8)] on the CPU:
/// bit i % 8 of byte i / 8 (LSB first) is 1 where sign i is negative.
at::Tensor glvq_pack_signs(const at::Tensor& signs);
/// Inverse of glvq_pack_signs: float +-1 [n] on the CPU.
at::Tensor glvq_unpack_signs(const at::Tensor& packed, int64_t n);

/// y = T x along the last dimension of X (size n = signs.numel()).
at::Tensor glvq_orth_apply(const at::Tensor& X, const at::Tensor& signs);
/// x = T^T y along the last dimension of Y.
at::Tensor glvq_orth_apply_t(const at::Tensor& Y, const at::Tensor& signs);

/// W' = T_out W T_in^T for W [out, in].
at::Tensor glvq_incoherent_weight(const at::Tensor& W, const at::Tensor& signs_out, const at::Tensor& signs_in);
/// W = T_out^T W' T_in: the inverse of glvq_incoherent_weight.
at::Tensor glvq_coherent_weight(const at::Tensor& Wp, const at::Tensor& signs_out, const at::Tensor& signs_in);
/// H' = T_in H T_in^T for H [in, in].
at::Tensor glvq_incoherent_hessian(const at::Tensor& H, const at::Tensor& signs_in);

}  // namespace glvq
