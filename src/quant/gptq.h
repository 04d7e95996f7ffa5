#pragma once
/// GPTQ (Frantar et al., 2022): column-by-column rounding onto the RTN integer
/// grid, each column's rounding error pushed onto the columns not yet quantized
/// through the upper Cholesky factor of H^-1, in lazy blocks of 128 columns.
/// Follows the reference implementation (gptq.py, fasterquant): dead inputs
/// (H_ii = 0) get H_ii = 1 and W[:, i] = 0; dampening damp * mean(diag H);
/// act-order = columns in order of descending diag(H) (ties: lower index
/// first); static groups = each group's grid computed from the original W
/// before any update. Two deliberate differences: the Cholesky factorizations
/// run in double, and if they fail the dampening is retried (damped_cholesky.h:
/// 0 -> 1e-4, then x10, up to 4 times, with a warning) instead of aborting.
///
/// The result is stored in the RTN format (rtn.h): codes in the original column
/// order, scale/zero per original group, so grid_dequantize serves both.
#include "config/config.h"
#include "quant/quantizer.h"

#include <cstdint>
#include <string>

namespace glvq {

/// GPTQ of W (float [out, in], any device) with H (float [in, in]) at integer
/// BITS and group size GS (any in: the last group may be narrower). Returns the stored layer (method "gptq");
/// loss and loss_init are not set. NAME names the layer in messages.
QuantizedLinear gptq_quantize_weight(const at::Tensor& W, const at::Tensor& H, int bits, int64_t group_size,
                                     const GptqConfig& cfg, const std::string& name);

/// The "gptq" quantizer (QC.bits integer, QC.gptq); loss_init is RTN's loss
/// at the same bits and group size.
std::unique_ptr<Quantizer> make_gptq_quantizer(const QuantConfig& qc);

}  // namespace glvq
