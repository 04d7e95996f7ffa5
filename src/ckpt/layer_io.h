#pragma once
/// One quantized linear layer as an HDF5 group, the same in block files and
/// in the final checkpoint (docs/FORMAT.md, "Layer group"):
///   /layers/<block>/<linear>/   e.g. "model.layers.3.mlp.up_proj.weight" -> /layers/3/mlp.up_proj
///     datasets: one per QuantizedLinear::arrays entry, stored dtype and shape
///     attributes: tensor_name, method, out, in, loss, loss_init, seconds,
///                 arrays (JSON list of the dataset names), and every
///                 QuantizedLinear::attrs entry as a float64 attribute.
#include "ckpt/h5_util.h"
#include "quant/quantizer.h"

#include <string>

namespace glvq {

/// Where a decoder-layer weight lives: "model.layers.<block>.<linear>.weight".
struct LayerPath {
  int block = -1;
  std::string linear;  ///< e.g. "mlp.up_proj"
};

/// Splits TENSOR_NAME; throws naming it unless it is a decoder-layer weight.
LayerPath layer_path_of(const std::string& tensor_name);
/// Inverse of layer_path_of: "model.layers.<block>.<linear>.weight".
std::string layer_tensor_name(int block, const std::string& linear);

/// Writes Q as the group PARENT/<linear> (PARENT is the /layers/<block> group).
/// FILE names the file in messages.
void write_layer_group(hid_t parent, const std::string& tensor_name, const QuantizedLinear& q,
                       const std::string& file);

/// Reads the layer group GROUP; every dataset is checksum-verified. WHERE names
/// the group in messages ("<file>: /layers/3/mlp.up_proj").
QuantizedLinear read_layer_group(hid_t group, const std::string& where);

/// The layer's attributes (method, shape, losses, attrs) without its arrays.
QuantizedLinear read_layer_header(hid_t group, const std::string& where);

/// The group's tensor_name attribute (what layer_names() lists).
std::string read_layer_tensor_name(hid_t group, const std::string& where);

/// Attribute names a layer group uses itself; QuantizedLinear::attrs may not use them.
bool is_reserved_layer_attr(const std::string& name);

/// Checks the root attributes format == FORMAT and 1 <= format_version <= VERSION
/// of an open FILE and returns the file's format_version; the error names PATH,
/// says what the file is instead (foreign HDF5, a glvq file of the other kind, a
/// newer version) and what to do. WHAT is the expected kind in words ("block file",
/// "checkpoint").
int64_t check_file_format(hid_t file, const std::string& path, const std::string& format, int64_t version,
                          const std::string& what);

/// The format_version a file holding Q needs (docs/FORMAT.md, Versioning): 2 when Q
/// has a narrower last group (its group_size does not divide in), which a version-1
/// reader would refuse as damaged; else 1. A file takes the largest over its layers,
/// so files without narrower groups keep version 1 and their bytes.
int64_t layer_format_version(const QuantizedLinear& q);

/// Compression for array NAME of NBYTES: shuffle + deflate for metadata of at
/// least 1 KiB (G, scales, zero points, bit maps); none for packed codes and
/// random sign/permutation bits, which do not shrink.
H5Compression layer_array_compression(const std::string& array_name, size_t nbytes);

}  // namespace glvq
