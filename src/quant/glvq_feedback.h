#pragma once
/// LDLQ / GPTQ-style error feedback for GLVQ: the factors that carry the
/// error of the columns already quantized onto the ones still to come.
///
/// With U the upper Cholesky factor of H^-1 (H^-1 = U^T U) and blocks of b
/// columns, F = blockdiag_b(U)^-1 U. Quantizing block p with error e (target
/// minus reconstruction) and updating target[:, later] -= e F[p, later] makes
/// the layer loss tr(E H E^T) equal to sum_p tr(e_p D_p e_p^T) with
/// D_p = (U_pp^T U_pp)^-1: each block is quantized against its own metric
/// D_p, the rest of the loss is cancelled by the later columns.
#include <ATen/ATen.h>

#include <string>

namespace glvq {

/// Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, float on H's
/// device: damped_inverse_cholesky (quant/damped_cholesky.h, GPTQ's too) with
/// its retry rule, the error naming GLVQ's remedies.
at::Tensor glvq_inverse_cholesky(const at::Tensor& H, double damp, const std::string& name);
/// F = blockdiag_b(U)^-1 U, [in, in] float (BLOCK divides in).
at::Tensor glvq_feedback_matrix(const at::Tensor& U, int64_t block);
/// D_g = (U_gg^T U_gg)^-1 for the diagonal gs x gs blocks of U: [in/gs, gs, gs].
at::Tensor glvq_feedback_metrics(const at::Tensor& U, int64_t gs);
/// U [in, in] padded to [in_pad, in_pad] for a layer padded with zero weight
/// columns: an identity block for the padding, so no error flows between real and
/// padding columns and the real columns' metrics are unchanged.
at::Tensor glvq_pad_factor(const at::Tensor& U, int64_t in_pad);

}  // namespace glvq
