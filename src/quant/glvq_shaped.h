#pragma once
/// One layer's GLVQ run with the shaped code (quant.glvq.code = shaped), in
/// explicit steps: metric and feedback factors, init, bit allocation, Lloyd
/// learning (encode with LDLQ feedback, then the least-squares G for those
/// codes, repeated), and the stored arrays. docs/GLVQ.md has the measurements.
#include <ATen/ATen.h>

#include <string>

#include "quant/glvq.h"

namespace glvq {

/// The layer after the incoherence step: W, H as given, WP / HP transformed
/// (= W, H without incoherence), the sign vectors (undefined without it).
struct GlvqPrepared {
  at::Tensor W, H, Wp, Hp, s_in, s_out;
};

/// The shaped code's own config rules (dim a multiple of 8, no companding):
/// a UsageError saying what to change.
void glvq_check_shaped_config(const GlvqConfig& c);

/// Quantizes the prepared layer with the shaped code in groups of GS columns (a
/// multiple of the dim; the last group may be narrower, glvq_codec.h); loss and
/// loss_init are layer_loss of the stored arrays, as glvq_quantize_layer's.
QuantizedLinear glvq_shaped_quantize_layer(const GlvqPrepared& in, const std::string& name, const GlvqOptions& opt,
                                           int64_t gs);

}  // namespace glvq
