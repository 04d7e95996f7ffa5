#pragma once
/// The starting point of GLVQ learning for a batch of groups: scale from the
/// group's largest weight, mu from its kurtosis, G from the Cholesky factor of
/// the second moment of its companded d-vectors, sized for b bits.
#include <ATen/ATen.h>

#include "quant/glvq_group_ops.h"

namespace glvq {

/// What init needs from the data, independent of the bit width.
struct GlvqInitStats {
  at::Tensor scale;  ///< [B] fp16-representable max |w| of the group (1 for an all-zero group)
  at::Tensor mu;     ///< [B] clamp(100 tanh(kurtosis / 10), 10, 255), fp16-representable; 0 without companding
  at::Tensor chol;   ///< [B, d, d] lower Cholesky factor of E[u u^T] over the group's companded d-vectors
};
/// WG [B, out, gs]; LAST_COLS in 1..gs-1 says that the last group is narrower:
/// its columns LAST_COLS.. are padding (zeros), left out of its statistics.
GlvqInitStats glvq_init_stats(const at::Tensor& Wg, int64_t dim, bool companding, int64_t last_cols = 0);

/// Step of the MSE-optimal uniform quantizer with 2^b levels for a unit
/// Gaussian (Max 1960), b = 1..8: the lattice spacing in units of the data's std.
double glvq_gaussian_step(int bits);

/// Init of B groups WG [B, out, gs] at widths BITS ([B] int64): G = a * step(b) * chol
/// with the factor a per group chosen from a small grid by the group's loss
/// tr(E A E^T) (A [B, gs, gs], rounding and feedback F as in learning).
/// Returns the parameters; LOSS (if given) receives the per-group losses [B].
GlvqParams glvq_init_params(const at::Tensor& Wg, const GlvqInitStats& st, const at::Tensor& bits, const at::Tensor& A,
                            const at::Tensor& F, const std::string& rounding, bool companding,
                            at::Tensor* loss = nullptr);

}  // namespace glvq
