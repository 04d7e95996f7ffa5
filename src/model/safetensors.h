#pragma once
/// Read-only, mmap-backed safetensors file. The header is validated fully at
/// open (JSON shape, dtypes, offsets inside the file, shape x dtype == bytes,
/// no overlaps); the data pages are only touched when a caller reads them.
#include "model/dtype.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace glvq {

struct TensorView {
  std::string name;
  std::string file;            ///< path of the safetensors file it lives in
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  ///< points into the mapping; size nbytes
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  /// Maps and validates PATH; throws glvq::Error naming the file (and tensor).
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  /// Validates the SIZE-byte safetensors image at BYTES (a whole file) like open();
  /// the views point into BYTES, which the caller keeps alive and unchanged. PATH
  /// only names it in messages. The fuzzer uses it: ASan sees a read past the end
  /// of a heap buffer, while a mapping hides it up to the page boundary.
  static std::shared_ptr<SafetensorsFile> parse(const void* bytes, size_t size, const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  /// Throws if the tensor is absent (names the file and the tensor).
  const TensorView& get(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

/// Writes tensors to PATH as safetensors (temp file + rename). Used by
/// glvq-export, glvq-synth and tests that build small models.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  ///< numel(shape) * dtype_size(dtype) bytes
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

/// The same without holding the data: PRODUCE(i, sink) is called once per
/// tensor in order and must pass exactly its bytes to SINK, in any number of
/// pieces (a file of many GB is written with one tensor piece in memory).
struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};
using ByteSink = std::function<void(const void* data, size_t nbytes)>;
using TensorProducer = std::function<void(size_t index, const ByteSink& sink)>;
void write_safetensors_streamed(const std::string& path, const std::vector<TensorSpec>& tensors,
                                const std::map<std::string, std::string>& metadata, const TensorProducer& produce);

}  // namespace glvq
