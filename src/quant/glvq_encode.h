#pragma once
/// The final GLVQ encode of a layer: parameters rounded to what is stored
/// (fp16), codes written in the glvq_codec layout. Without feedback and with
/// rounding-off this is the codec reference encoder itself; nearest-plane
/// rounding and error feedback choose the codes with the batched tensor path
/// and pack them with the reference packer, so the reference decoder reads
/// exactly what was chosen.
#include <ATen/ATen.h>

#include <string>

#include "quant/glvq_codec.h"
#include "quant/glvq_group_ops.h"

namespace glvq {

/// glvq_encode_ref / glvq_decode_ref run in parallel (at::parallel_for) over
/// (group, block of rows) pieces, each a call of the reference on a one-group
/// layout: the same bytes and floats as one serial call.
void glvq_encode_ref_parallel(const GlvqLayout& L, const GlvqGroupParams& p, const float* W, uint8_t* codes);
void glvq_decode_ref_parallel(const GlvqLayout& L, const GlvqGroupParams& p, const uint8_t* codes, float* W_hat);

/// P with G, mu and scale rounded to fp16 (kept float, on P's device).
GlvqParams glvq_round_to_storage(const GlvqParams& p);

struct GlvqEncodeOptions {
  bool companding = true;
  std::string rounding = "babai";
  /// Error feedback: F_FULL = blockdiag_b(U)^-1 U [in, in] (glvq_feedback_matrix).
  /// FEEDBACK_BLOCK = d feeds errors forward vector by vector (also inside a
  /// group), = group size only from group to group.
  at::Tensor F_full;
  int64_t feedback_block = 0;
};

struct GlvqEncoded {
  at::Tensor codes;    ///< uint8 [bytes] on the CPU, glvq_codec layout
  at::Tensor targets;  ///< [B, out, gs] each group's target when it was encoded (W' itself without feedback;
                       ///< a narrower last group padded with zero columns)
  /// With feedback: [B, out, gs] the error of every vector against the target it
  /// was rounded from (after the errors fed to it from the left, also inside its
  /// group), whose block losses sum to the layer's (glvq_feedback.h). Undefined without.
  at::Tensor errors;
};

/// Encodes WP [out, in] (the transformed weight, any device, any in) in groups of
/// GS columns, B = ceil(in/gs), with P ([B] groups, already on the storage grid:
/// glvq_round_to_storage). With feedback, F_FULL is [B*gs, B*gs]: the layer's
/// factor padded with an identity block for the padding columns.
GlvqEncoded glvq_encode_layer(const at::Tensor& Wp, int64_t gs, const GlvqParams& p, const GlvqEncodeOptions& o);

}  // namespace glvq
