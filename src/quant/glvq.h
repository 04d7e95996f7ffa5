#pragma once
/// GLVQ: grouped lattice vector quantization (Zhang et al., NeurIPS 2025), with
/// the options glvq adds (nearest-plane rounding, LDLQ error feedback,
/// randomized-Hadamard incoherence). docs/GLVQ.md says what was decided where
/// the paper is silent, with the measurements behind the defaults.
///
/// Stored arrays (CPU):
///   "codes"     uint8 [bytes]        glvq_codec layout (quant/glvq_codec.h) of W'
///   "G"         fp16 [groups, d, d]  generation matrices (row-major)
///   "mu"        fp16 [groups]        mu-law parameters (0 = no companding)
///   "scale"     fp16 [groups]        companding scales
///   "bits"      uint8 [groups]       bit widths (1..8)
///   "signs_in"  uint8 [ceil(in/8)]   } incoherence only (quant/glvq_hadamard.h):
///   "signs_out" uint8 [ceil(out/8)]  } W = T_out^T W' T_in; without it W = W'
/// groups = ceil(in / group_size): the last group may be narrower (glvq_codec.h).
/// attrs: "dim", "group_size" (never 0 once stored: 0 and sizes past the row are
///   stored as the row rounded up to whole vectors), "incoherence" (0/1), "seed";
///   "code" (GlvqCode: 0 box, absent in older files = box; 1 shaped) and, with
///   the shaped code, "codebook" (kShapedBookVersion of the tables it was made with).
#include <cstdint>
#include <memory>
#include <string>

#include "quant/glvq_bit_alloc.h"
#include "quant/glvq_codec.h"
#include "quant/quantizer.h"

namespace glvq {

/// Rebuilds the fp32 weight [out, in] on the CPU from the stored arrays and attrs alone.
at::Tensor glvq_dequantize(const QuantizedLinear& q);
/// The same on DEVICE (a CUDA DEVICE decodes with the kernels, bit-identical with the CPU reference).
at::Tensor glvq_dequantize_on(const QuantizedLinear& q, const at::Device& device);

/// The code layout of a stored glvq layer, from its attrs (checked: names the damage).
GlvqLayout glvq_layer_layout(const QuantizedLinear& q);
/// Its "bits" array (uint8 [groups], checked 1..8) and "codes" array (uint8, size checked against BITS).
at::Tensor glvq_layer_bits(const QuantizedLinear& q, const GlvqLayout& L);
at::Tensor glvq_layer_codes(const QuantizedLinear& q, const GlvqLayout& L, const at::Tensor& bits);
/// Array KEY of a glvq layer, checked to be DTYPE with NUMEL values (names the damage otherwise).
const at::Tensor& glvq_layer_array(const QuantizedLinear& q, const char* key, at::ScalarType dtype, int64_t numel);

/// The "glvq" quantizer for QC (QC.bits, QC.glvq); SEED and the layer name seed the incoherence signs.
std::unique_ptr<Quantizer> make_glvq_quantizer(const QuantConfig& qc, uint64_t seed);

/// Everything one layer's GLVQ run depends on: the config keys plus choices
/// that are fixed in the quantizer but open for measurement (bench, tests).
struct GlvqOptions {
  GlvqConfig cfg;
  double bits = 2.0;  ///< quant.bits: average code bits per weight
  uint64_t seed = 0;
  int64_t feedback_block = 0;  ///< error feedback granularity in columns; 0 = d (vector by vector)
  int passes = 2;              ///< with error feedback: learn, encode, re-learn on the fed-forward targets, encode
  double damp = 0.01;          ///< relative damping of H for the feedback factor
  GlvqAllocSearch alloc_search = GlvqAllocSearch::exact;
  bool learn = true;   ///< false: store the init (for measurements)
  bool cosine = true;  ///< cosine learning-rate decay (false: constant lr)
  bool scalar_init = false;  ///< shaped code: G = a * rms * I per group (the QuIP#-like baseline)
};

/// Quantizes one layer (W [out, in], H [in, in], any device); the result's
/// loss and loss_init are layer_loss of glvq_dequantize of the stored arrays.
QuantizedLinear glvq_quantize_layer(const at::Tensor& W, const at::Tensor& H, const std::string& name,
                                    const GlvqOptions& opt);

}  // namespace glvq
