#pragma once
/// Encoding a layer with GLVQ's shaped code (quant/glvq_codebook.h) and the
/// closed-form (Lloyd) update of the generators for fixed codes.
///
/// Group g's d-vectors decode to w = s_g * G_g c, c the d/8 sub-codewords of
/// the vector; the encoder takes y = G_g^-1 (t / s_g) of the vector's target t
/// and, per 8 coordinates, the nearest codeword of the group's width (the
/// codec's rule, glvq_codec.h). With error feedback (LDLQ) the vectors are
/// encoded left to right and each one's error e = t - w updates the later
/// columns: t[:, later] -= e F[vector, later], F = blockdiag_d(U)^-1 U
/// (quant/glvq_feedback.h). Then tr(E H E^T) = sum_p tr(e_p D_p e_p^T) over the
/// vector columns p, D_p = (U_pp^T U_pp)^-1, which is what learning minimises.
///
/// On the CPU rows run in parallel; CUDA tensors take the GPU encoder
/// (quant/glvq_shaped_cuda.h), the rest runs as ATen ops on their device. The
/// encode is the format's own reference rule, so codes chosen here decode exactly
/// with glvq_decode_ref.
#include <ATen/ATen.h>

namespace glvq {

/// Per-group parameters of the shaped code, float32 (bits int64), CPU.
struct GlvqShapedParams {
  at::Tensor G;      ///< [B, d, d] row-major generators
  at::Tensor scale;  ///< [B] s_g > 0
  at::Tensor bits;   ///< [B] bits per coordinate, 1..8
};

struct GlvqShapedCodes {
  at::Tensor codes;  ///< int64 [out, in / 8]: the sub-code of every 8 coordinates
  at::Tensor C;      ///< float [out, in]: the unit codewords c (before G and s)
  at::Tensor W_hat;  ///< float [out, in]: the reconstruction s G c
  at::Tensor T;      ///< float [out, in]: the target each vector was encoded from
};

/// Encodes WP [out, in] (float, CPU) in groups of GS columns (GS | in, d | GS).
/// F_FULL [in, in] (or undefined: no feedback) is the LDLQ feedback factor;
/// with INTER false the errors are fed forward only inside each group, every
/// group starting from WP itself (the init and the bit allocation score groups so).
/// With D ([in/d, d, d] vector metrics) and CANDIDATES > 1, each sub-code is
/// then chosen among its candidates by the error's metric e D_p e^T (search
/// under the loss itself, not Euclidean distance in the code's basis).
GlvqShapedCodes glvq_shaped_encode_layer(const at::Tensor& Wp, int64_t gs, const GlvqShapedParams& p,
                                         const at::Tensor& F_full, bool inter, const at::Tensor& D = at::Tensor(),
                                         int candidates = 1);

/// Per-group loss sum over rows and the group's vector columns p of e D_p e^T,
/// e = T - W_hat; D [in/d, d, d]: float [B].
at::Tensor glvq_shaped_group_losses(const GlvqShapedCodes& c, const at::Tensor& D, int64_t gs);

/// The generators that minimise the losses above for the codes and targets of
/// C held fixed: per group, sum_p D_p G S_p = sum_p D_p T_p with S_p = sum_r c c^T
/// and T_p = sum_r (t / s) c^T over the rows (a d^2 x d^2 linear system, solved
/// in double with a relative ridge RIDGE). A row of G that no metric of the group
/// sees (a padding coordinate, a dead input without damping) has no data: it keeps
/// its value in G_PREV [B, d, d] instead of the ridge's 0. [B, d, d] float.
at::Tensor glvq_shaped_lloyd_update(const GlvqShapedCodes& c, const at::Tensor& D, const at::Tensor& scale, int64_t gs,
                                    int64_t d, double ridge, const at::Tensor& G_prev);

}  // namespace glvq
