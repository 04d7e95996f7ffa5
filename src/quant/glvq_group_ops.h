#pragma once
/// Batched LibTorch versions of the GLVQ code format (glvq_codec.h) for a batch
/// of B column groups of one layer: companding, Babai rounding-off or
/// nearest-plane rounding onto the coset G(Z^d + 1/2) with the b-bit clamp,
/// reconstruction, LDLQ-style rounding with error feedback between the
/// vectors of a group, and the per-group loss tr(E A E^T). Every function
/// works on any device; the format itself is defined by glvq_codec_ref.cpp,
/// these are its tensor speed-ups (same math, other float summation order).
#include <ATen/ATen.h>

#include <string>

namespace glvq {

/// Per-group parameters of B groups, float32 on the work device.
struct GlvqParams {
  at::Tensor G;                                        ///< [B, d, d] generation matrices (row-major, as stored)
  at::Tensor mu;                                       ///< [B] mu-law parameter; all 0 when companding is off
  at::Tensor scale;                                    ///< [B] companding scale s > 0
  at::Tensor bits;                                     ///< [B] int64 bit widths, 1..8
  GlvqParams slice(int64_t begin, int64_t end) const;  ///< groups [begin, end)
  GlvqParams clone() const;
};

/// W [out, in] -> [B, out, gs] (contiguous copy; B = in / gs).
at::Tensor glvq_group_view(const at::Tensor& W, int64_t gs);
/// Inverse of glvq_group_view: [B, out, gs] -> [out, B * gs].
at::Tensor glvq_group_unview(const at::Tensor& Wg);

/// u = c(w) for X [B, ...] with per-group SCALE and MU [B] (MU all 0 or all > 0).
at::Tensor glvq_compand_t(const at::Tensor& X, const at::Tensor& scale, const at::Tensor& mu, bool companding);
/// w = c^-1(u) for U [B, ...].
at::Tensor glvq_expand_t(const at::Tensor& U, const at::Tensor& scale, const at::Tensor& mu, bool companding);

/// What rounding needs from G, computed once per G.
struct GlvqRounder {
  bool nearest_plane = false;
  at::Tensor Ginv;    ///< [B, d, d] (rounding-off)
  at::Tensor Q, R;    ///< [B, d, d] G = Q R (nearest-plane)
  at::Tensor lo, hi;  ///< [B, 1, 1] float clamp bounds -2^(b-1), 2^(b-1) - 1
};
/// ROUNDING: "babai" (rounding-off, z = floor(G^-1 u), the codec's encoder) or
/// "nearest_plane" (Babai's nearest-plane algorithm on G = QR, last coordinate
/// first, each coordinate clamped as it is chosen).
GlvqRounder glvq_make_rounder(const at::Tensor& G, const at::Tensor& bits, const std::string& rounding);
/// Codes z (float integers in [lo, hi]) of the companded vectors U [B, M, d].
at::Tensor glvq_round(const at::Tensor& U, const GlvqRounder& r);
/// Companded reconstruction G (z + 1/2) of Z [B, M, d].
at::Tensor glvq_lattice_point(const at::Tensor& Z, const at::Tensor& G);

/// Codes and reconstruction of the groups WG [B, out, gs] under P. When F is
/// defined ([B, gs, gs], block upper triangular in d x d blocks), the vectors
/// are rounded left to right and each one's error e (target - reconstruction,
/// [B, out, d]) is fed forward: target[:, :, later] -= e F[rows of the vector,
/// later]. Returns {Z [B, out * gs/d, d], W_hat [B, out, gs], E [B, out, gs]}.
/// E is the error of every vector against the target it was rounded from
/// (with feedback, the fed-forward target), what LDLQ propagates further.
struct GlvqGroupCodes {
  at::Tensor Z, W_hat, E;
};
GlvqGroupCodes glvq_quantize_groups(const at::Tensor& Wg, const GlvqParams& p, bool companding, const GlvqRounder& r,
                                    const at::Tensor& F);

/// tr(E_b A_b E_b^T) per group for E [B, out, gs], A [B, gs, gs]: float [B].
at::Tensor glvq_group_losses(const at::Tensor& E, const at::Tensor& A);

/// Diagonal blocks A[b] = H[gs b : gs (b+1), same] of H [in, in]: [B, gs, gs].
at::Tensor glvq_diag_blocks(const at::Tensor& H, int64_t gs);

}  // namespace glvq
