#pragma once
/// Durable per-block results: <output_dir>/blocks/block-<k>.h5 holds block k's
/// quantized linears and the provenance they were made under. A block file is
/// either complete and valid, or absent (written to a temporary, fsynced and
/// renamed), so --resume may trust any file that reads back and matches.
///
/// Layout (docs/FORMAT.md, "Block file"): root attributes format="glvq-block",
/// format_version=1 or 2 (docs/FORMAT.md), block=k, provenance (JSON text); /layers/<k>/<linear>/
/// groups exactly as in the final checkpoint (ckpt/layer_io.h).
#include "quant/quantizer.h"

#include <nlohmann/json.hpp>

#include <map>
#include <set>
#include <string>

namespace glvq {

constexpr const char* kBlockFormat = "glvq-block";
/// The newest block file version this build reads and writes (docs/FORMAT.md).
constexpr int64_t kBlockFormatVersion = 2;

/// Writes block BLOCK's LAYERS (by tensor name "model.layers.<BLOCK>.<linear>.weight")
/// with PROVENANCE (any JSON object: quant_config, quant_config_hash,
/// model_checksums, git_commit, seed, ...) to PATH via PATH.tmp-<pid>, flush,
/// close, fsync and rename. Throws glvq::Error naming PATH; on failure PATH is
/// untouched and the temporary is removed.
void write_block_file(const std::string& path, int block, const std::map<std::string, QuantizedLinear>& layers,
                      const nlohmann::json& provenance);

struct BlockFile {
  int block = -1;
  int64_t format_version = 0;  ///< as read
  std::map<std::string, QuantizedLinear> layers;  ///< by tensor name
  nlohmann::json provenance;
};

/// Reads and verifies PATH completely (every dataset's checksum). Throws
/// glvq::Error naming PATH for anything invalid: absent, truncated, not HDF5,
/// foreign HDF5, wrong format or version, missing groups/datasets/attributes.
BlockFile read_block_file(const std::string& path);

enum class BlockFileState {
  kMatches,   ///< complete, valid and made under the expected provenance: reuse it
  kAbsent,    ///< no file: compute the block
  kInvalid,   ///< truncated, corrupt or foreign: delete it and compute the block again
  kMismatch,  ///< valid, but made under other settings: refuse to mix (name `key` to the user)
};

struct BlockFileCheck {
  BlockFileState state = BlockFileState::kAbsent;
  std::string why;  ///< empty for kMatches; a sentence naming the file (and key) otherwise
  std::string key;  ///< kMismatch: the differing provenance key path, e.g. "quant_config.bits"
};

/// Provenance keys that may differ between runs without making a block
/// unusable (the code version: a fix that changes results must change a
/// compared key, e.g. a format or algorithm version in provenance).
const std::set<std::string>& default_provenance_ignore();

/// Classifies PATH against EXPECTED_PROVENANCE. Every top-level key of either
/// side is compared except those in IGNORE; nested objects are compared key by
/// key, so `key` is the deepest differing path ("model_checksums.<tensor>").
/// EXPECTED_BLOCK >= 0 also requires the file's block attribute to equal it.
/// CONTENTS (if given) receives the file's contents when it matches, so the
/// caller does not read it twice.
BlockFileCheck check_block_file(const std::string& path, const nlohmann::json& expected_provenance,
                                int expected_block = -1,
                                const std::set<std::string>& ignore = default_provenance_ignore(),
                                BlockFile* contents = nullptr);

/// True when PATH is a complete block file made under EXPECTED_PROVENANCE;
/// otherwise false with WHY (if given) saying why: absent, invalid, or
/// "setting <key> differs: ..." for a provenance mismatch.
bool block_file_matches(const std::string& path, const nlohmann::json& expected_provenance, std::string* why);

/// The first key path (dot-joined, keys in sorted order, descending into
/// objects) where STORED and EXPECTED differ, "" when equal apart from IGNORE'd
/// top-level keys. DETAIL (if given) gets "file: <v>, this run: <v>" (values
/// shortened); a key absent on one side reads "(absent)".
std::string provenance_diff(const nlohmann::json& stored, const nlohmann::json& expected,
                            const std::set<std::string>& ignore, std::string* detail = nullptr);

/// "<dir>/block-<k>.h5".
std::string block_file_path(const std::string& blocks_dir, int block);

}  // namespace glvq
