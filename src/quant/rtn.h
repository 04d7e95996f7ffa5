#pragma once
/// Round-to-nearest (RTN) with per-group asymmetric min-max grids, and the
/// storage format that RTN and GPTQ share ("integer grid" format).
///
/// A layer W [out, in] is cut into groups of gs consecutive input columns
/// (group_size 0 means gs = in): ceil(in/gs) groups, column j in group j / gs,
/// the last group narrower (in - gs * (groups - 1) columns) when gs does not
/// divide in. Row r's slice of group g has an
/// integer grid of 2^b levels: w_hat = scale[r][g] * (q - zero[r][g]), q in
/// [0, 2^b - 1]. The grid is the reference GPTQ quantizer's (asymmetric, the
/// range [min, max] widened to contain 0; an all-zero slice uses [-1, 1]):
///   scale = fp16((max - min) / (2^b - 1)),  zero = round(-min / scale),
///   q     = clamp(round(w / scale) + zero, 0, 2^b - 1)   (round half to even)
/// scale is rounded to fp16 before zero and q are computed, so the codes agree
/// with what is stored.
///
/// Stored arrays:
///   "codes" uint8 [out, row_bytes]: each row's in codes as one bit stream, b bits
///           per code, LSB first, code k at bit k*b; row_bytes = ceil(in*b/8).
///   "scale" fp16 [out, groups], "zero" fp16 [out, groups] (zero holds an integer
///           0..2^b-1; fp16 scale + fp16 zero = 32 bits per group: 0.25 bpw at gs 128).
///   attrs:  "bits" = b, "group_size" = gs (never 0 once stored; may exceed in,
///           then the one group is the whole row).
#include "quant/quantizer.h"

#include <cstdint>
#include <string>

namespace glvq {

/// The integer bit width for rtn/gptq; throws UsageError unless BITS is an integer in 1..8.
int grid_bits(double bits, const std::string& method);

/// The group size actually used for a layer with IN input columns (0 means IN);
/// any IN >= 1 works (the last group takes what is left). Throws naming the
/// layer NAME and its shape for a negative GROUP_SIZE or an empty layer.
int64_t grid_group_size(int group_size, int64_t out, int64_t in, const std::string& name,
                        const std::string& method);

/// ceil(IN / GROUP_SIZE): the number of groups of a row.
int64_t grid_groups(int64_t in, int64_t group_size);

/// Per-group grid of W [out, in] (any device): scale and zero as float tensors
/// [out, groups] on W's device, holding fp16-representable values.
struct IntGrid {
  at::Tensor scale, zero;
};
IntGrid grid_find_params(const at::Tensor& W, int bits, int64_t group_size);

/// q = clamp(round(w / scale) + zero, 0, 2^b - 1) for COLS columns of W
/// (float [out, cols]) that share one group's SCALE and ZERO (float [out]).
/// Returns float integer values.
at::Tensor grid_quantize_cols(const at::Tensor& W, const at::Tensor& scale, const at::Tensor& zero, int bits);

/// Codes of all of W [out, in] under GRID, as uint8 [out, in] on W's device.
at::Tensor grid_quantize(const at::Tensor& W, const IntGrid& grid, int bits, int64_t group_size);

/// Packs Q (uint8 [out, in], values < 2^bits) into the "codes" layout, uint8
/// [out, ceil(in*bits/8)] on the CPU.
at::Tensor grid_pack_codes(const at::Tensor& q, int bits);
/// Inverse of grid_pack_codes: uint8 [out, in] on the CPU.
at::Tensor grid_unpack_codes(const at::Tensor& codes, int64_t out, int64_t in, int bits);

/// The stored layer (arrays on the CPU) for codes Q (uint8 [out, in]) and GRID.
QuantizedLinear grid_make_layer(const std::string& method, const at::Tensor& q, const IntGrid& grid,
                                int bits, int64_t group_size);

/// Rebuilds the fp32 weight [out, in] (CPU) from a "rtn" or "gptq" layer's arrays.
at::Tensor grid_dequantize(const QuantizedLinear& q);

/// RTN of W (float [out, in], any device) in groups of GROUP_SIZE: the stored layer, loss not set.
QuantizedLinear rtn_quantize_weight(const at::Tensor& W, int bits, int64_t group_size);

/// The "rtn" quantizer (QC.bits integer, QC.rtn.group_size).
std::unique_ptr<Quantizer> make_rtn_quantizer(const QuantConfig& qc);

}  // namespace glvq
