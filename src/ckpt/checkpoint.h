#pragma once
/// The final quantized model, <output_dir>/model.glvq.h5: every quantized
/// linear, the unquantized tensors in their original dtype, and root
/// attributes that make the file self-describing. docs/FORMAT.md is the schema:
///   /                      attributes: format="glvq", format_version=1 or 2, model_config,
///                          config, method, bits_per_weight, bits_breakdown,
///                          bits_per_weight_model, git_commit, layer_losses,
///                          provenance, layer_count, tensor_count
///   /layers/<block>/<linear>/   one group per quantized linear (ckpt/layer_io.h)
///   /tensors/<name>        unquantized tensors (embedding, norms, lm_head)
/// Written to a temporary, fsynced and renamed: a checkpoint is complete or absent.
#include "model/safetensors.h"
#include "quant/quantizer.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace glvq {

constexpr const char* kCheckpointFormat = "glvq";
/// The newest checkpoint version this build reads and writes (docs/FORMAT.md).
constexpr int64_t kCheckpointFormatVersion = 2;

/// Root attributes the caller supplies; the writer derives the rest (bits,
/// losses, counts) from what was actually stored.
struct CheckpointInfo {
  std::string model_config;  ///< the model's config.json text, stored verbatim
  std::string config;        ///< the resolved experiment config as JSON text (config_to_json(cfg).dump())
  std::string method;        ///< quant.method
  std::string git_commit;
  nlohmann::json provenance = nlohmann::json::object();  ///< e.g. quant_config_hash, model_checksums, seed
};

struct CheckpointContents {
  std::map<std::string, QuantizedLinear> layers;  ///< by tensor name "model.layers.<b>.<linear>.weight"
  std::vector<TensorView> tensors;                ///< unquantized, written in their own dtype
  CheckpointInfo info;
};

/// Writes C to PATH atomically (PATH.tmp-<pid>, flush, fsync, rename).
/// Throws glvq::Error naming PATH; on failure PATH is untouched.
void write_checkpoint(const std::string& path, const CheckpointContents& c);

/// The same, one layer / tensor at a time, so that gather holds one block in
/// memory rather than the whole model.
class CheckpointWriter {
 public:
  /// Creates PATH.tmp-<pid>; PATH itself appears only at finish().
  explicit CheckpointWriter(const std::string& path);
  /// Without finish(): closes and removes the temporary (an error path).
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  /// Q under TENSOR_NAME ("model.layers.<b>.<linear>.weight"); names must be unique.
  void add_layer(const std::string& tensor_name, const QuantizedLinear& q);
  /// An unquantized tensor, bytes and dtype as given (bf16 stays 16-bit).
  void add_tensor(const TensorView& v);
  /// The same for a CPU tensor (tests, tools).
  void add_tensor(const std::string& name, const at::Tensor& t);
  /// Writes the root attributes, flushes, closes, fsyncs and renames to PATH.
  void finish(const CheckpointInfo& info);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Type and size of a stored tensor, without its data.
struct StoredTensorInfo {
  DType dtype = DType::U8;
  std::vector<int64_t> shape;
  size_t nbytes = 0;         ///< numel * dtype size
  size_t storage_bytes = 0;  ///< bytes in the file (after compression)
};

/// Reads model.glvq.h5. Opening checks the format, version and that every
/// listed layer and tensor is present; each read verifies the data's checksum.
/// Not thread-safe (one HDF5 file handle).
class CheckpointReader {
 public:
  /// Throws glvq::Error naming PATH when it is absent, truncated, not HDF5,
  /// foreign HDF5, another glvq file kind, a newer format, or incomplete.
  explicit CheckpointReader(const std::string& path);
  ~CheckpointReader();
  CheckpointReader(const CheckpointReader&) = delete;
  CheckpointReader& operator=(const CheckpointReader&) = delete;

  const std::string& path() const;
  /// Every root attribute; the JSON-text ones (model_config, config,
  /// bits_breakdown, layer_losses, provenance) parsed into JSON values.
  nlohmann::json root_attrs() const;
  /// A root text attribute verbatim (e.g. "model_config" to copy config.json).
  std::string root_attr_text(const std::string& name) const;

  /// Quantized layers' tensor names, by block number then linear name.
  std::vector<std::string> layer_names() const;
  bool has_layer(const std::string& name) const;
  QuantizedLinear layer(const std::string& name) const;
  /// The layer's method, shape, losses and attrs, with no arrays read.
  QuantizedLinear layer_header(const std::string& name) const;
  /// One array of layer NAME (checksum-verified), e.g. GLVQ's per-group "bits".
  at::Tensor layer_array(const std::string& name, const std::string& array) const;
  /// Stored arrays of layer NAME by array name, without reading their data.
  std::map<std::string, StoredTensorInfo> layer_array_info(const std::string& name) const;

  /// Unquantized tensors' names in name order.
  std::vector<std::string> tensor_names() const;
  bool has_tensor(const std::string& name) const;
  /// A contiguous CPU tensor in the stored (original) dtype.
  at::Tensor tensor(const std::string& name) const;
  StoredTensorInfo tensor_info(const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The bits breakdown as JSON: codes, lattice, companding, scales, bitmap,
/// transform, other, total (bits per weight) and weights.
nlohmann::json bits_breakdown_json(const BitsBreakdown& b);

}  // namespace glvq
