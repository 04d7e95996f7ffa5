#pragma once
/// A model directory's tensors: single model.safetensors or a sharded set with
/// model.safetensors.index.json. Shards are opened (mapped) lazily, so a rank
/// touches only the files and tensors it asks for; every read is accounted.
#include "model/safetensors.h"

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace glvq {

class ModelFiles {
 public:
  /// Reads the index (or finds the single file); opens no shard yet.
  explicit ModelFiles(const std::string& dir);

  const std::string& dir() const { return dir_; }
  /// All tensor names from the index / single file header.
  std::vector<std::string> names() const;
  bool has(const std::string& name) const;
  /// Maps the tensor's shard if needed and records the read. Throws naming the
  /// tensor and the directory when absent.
  const TensorView& get(const std::string& name);
  /// Header information only (opens the shard header, records no read).
  const TensorView& peek(const std::string& name);

  /// Names of tensors handed out by get() so far, and their total bytes (a
  /// tensor fetched twice counts once).
  std::set<std::string> tensors_read() const;
  size_t bytes_read() const;
  /// Number of safetensors files mapped so far: by get() and peek(), and for a
  /// directory without an index also by names() and has().
  size_t shards_opened() const;

 private:
  SafetensorsFile& shard_for(const std::string& name);
  /// Opens (once) the file FILE of dir_; caller holds mu_.
  SafetensorsFile& open_locked(const std::string& file) const;
  std::string dir_;
  std::string index_path_;                         ///< empty without an index
  std::string single_file_;                        ///< the one file when there is no index
  std::map<std::string, std::string> weight_map_;  ///< tensor -> file name (from the index)
  mutable std::map<std::string, std::shared_ptr<SafetensorsFile>> open_;  ///< file name -> mapping
  std::set<std::string> read_;
  size_t bytes_read_ = 0;
  mutable std::mutex mu_;
};

}  // namespace glvq
