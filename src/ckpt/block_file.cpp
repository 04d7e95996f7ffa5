#include "ckpt/block_file.h"

#include "ckpt/h5_util.h"
#include "ckpt/layer_io.h"
#include "common/fs_util.h"

#include <unistd.h>

#include <algorithm>

namespace glvq {
namespace {

constexpr const char* kWhat = "block file";

/// A value for a message: JSON text, cut to a readable length.
std::string short_value(const nlohmann::json* v) {
  if (!v) return "(absent)";
  std::string s = v->dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::string diff_rec(const nlohmann::json& a, const nlohmann::json& b, const std::string& prefix,
                     const std::set<std::string>* ignore, std::string* detail) {
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (auto it = a.begin(); it != a.end(); ++it) keys.insert(it.key());
    for (auto it = b.begin(); it != b.end(); ++it) keys.insert(it.key());
    for (const std::string& k : keys) {
      if (ignore && ignore->count(k)) continue;
      const std::string path = prefix.empty() ? k : prefix + "." + k;
      const bool in_a = a.contains(k), in_b = b.contains(k);
      if (!in_a || !in_b) {
        if (detail) {
          *detail = fmt::format("file: {}, this run: {}", short_value(in_a ? &a[k] : nullptr),
                                short_value(in_b ? &b[k] : nullptr));
        }
        return path;
      }
      std::string r = diff_rec(a[k], b[k], path, nullptr, detail);
      if (!r.empty()) return r;
    }
    return "";
  }
  if (a == b) return "";
  if (detail) *detail = fmt::format("file: {}, this run: {}", short_value(&a), short_value(&b));
  return prefix.empty() ? "(the whole provenance)" : prefix;
}

void write_block_to(const std::string& tmp, const std::string& path, int block,
                    const std::map<std::string, QuantizedLinear>& layers, const nlohmann::json& provenance) {
  H5Handle f = h5_create(tmp);
  h5_set_attr(f.id(), "format", kBlockFormat);
  int64_t version = 1;
  for (const auto& [name, q] : layers) version = std::max(version, layer_format_version(q));
  h5_set_attr(f.id(), "format_version", version);
  h5_set_attr(f.id(), "block", static_cast<int64_t>(block));
  h5_set_attr_json(f.id(), "provenance", provenance);
  {
    H5Handle lg = h5_create_group(f.id(), "layers", path);
    H5Handle bg = h5_create_group(lg.id(), std::to_string(block), path);
    for (const auto& [name, q] : layers) write_layer_group(bg.id(), name, q, path);
  }
  h5_close_file(f, path);
}

}  // namespace

std::string block_file_path(const std::string& blocks_dir, int block) {
  return fmt::format("{}/block-{}.h5", blocks_dir, block);
}

void write_block_file(const std::string& path, int block, const std::map<std::string, QuantizedLinear>& layers,
                      const nlohmann::json& provenance) {
  h5_quiet();
  GLVQ_CHECK(block >= 0, "cannot write block file {}: block index {} is negative", path, block);
  for (const auto& [name, q] : layers) {
    GLVQ_CHECK(layer_path_of(name).block == block, "cannot write block file {} for block {}: layer {} belongs to "
               "another block", path, block, name);
  }
  const std::string tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  try {
    write_block_to(tmp, path, block, layers, provenance);
    fsync_and_rename(tmp, path);
  } catch (...) {
    // A block file is complete or absent: never leave the partial temporary behind.
    ::unlink(tmp.c_str());
    throw;
  }
}

BlockFile read_block_file(const std::string& path) {
  H5Handle f = h5_open_read(path, kWhat);
  const int64_t version = check_file_format(f.id(), path, kBlockFormat, kBlockFormatVersion, kWhat);
  const std::string root = path + ": root";
  BlockFile bf;
  bf.format_version = version;
  const int64_t block = h5_get_attr_int(f.id(), "block", root);
  GLVQ_CHECK(block >= 0 && block < (int64_t(1) << 30), "{}: block attribute {} is invalid", path, block);
  bf.block = static_cast<int>(block);
  bf.provenance = h5_get_attr_json(f.id(), "provenance", root);
  H5Handle lg = h5_open_group(f.id(), "layers", path);
  const std::string bname = std::to_string(bf.block);
  for (const std::string& child : h5_children(lg.id(), path + ": /layers")) {
    GLVQ_CHECK(child == bname, "{}: /layers/{} does not belong in the file of block {}", path, child, bf.block);
  }
  H5Handle bg = h5_open_group(lg.id(), bname, path + ": /layers");
  for (const std::string& linear : h5_children(bg.id(), path)) {
    const std::string where = fmt::format("{}: /layers/{}/{}", path, bname, linear);
    H5Handle g = h5_open_group(bg.id(), linear, where);
    const std::string name = read_layer_tensor_name(g.id(), where);
    GLVQ_CHECK(name == layer_tensor_name(bf.block, linear), "{}: tensor_name \"{}\" does not match the group",
               where, name);
    bf.layers[name] = read_layer_group(g.id(), where);
  }
  return bf;
}

const std::set<std::string>& default_provenance_ignore() {
  static const std::set<std::string> keys = {"git_commit"};
  return keys;
}

std::string provenance_diff(const nlohmann::json& stored, const nlohmann::json& expected,
                            const std::set<std::string>& ignore, std::string* detail) {
  return diff_rec(stored, expected, "", &ignore, detail);
}

BlockFileCheck check_block_file(const std::string& path, const nlohmann::json& expected_provenance,
                                int expected_block, const std::set<std::string>& ignore, BlockFile* contents) {
  BlockFileCheck c;
  if (!file_exists(path)) {
    c.state = BlockFileState::kAbsent;
    c.why = fmt::format("{} does not exist", path);
    return c;
  }
  BlockFile bf;
  try {
    bf = read_block_file(path);
  } catch (const Error& e) {
    c.state = BlockFileState::kInvalid;
    c.why = e.message();
    return c;
  } catch (const std::exception& e) {  // e.g. an absurd shape in a damaged header makes allocation fail
    c.state = BlockFileState::kInvalid;
    c.why = fmt::format("cannot read block file {}: {}", path, e.what());
    return c;
  }
  if (expected_block >= 0 && bf.block != expected_block) {
    c.state = BlockFileState::kInvalid;
    c.why = fmt::format("{} holds block {}, not block {}", path, bf.block, expected_block);
    return c;
  }
  std::string detail;
  c.key = provenance_diff(bf.provenance, expected_provenance, ignore, &detail);
  if (!c.key.empty()) {
    c.state = BlockFileState::kMismatch;
    c.why = fmt::format("setting {} differs: {} was made with another value ({})", c.key, path, detail);
    return c;
  }
  c.state = BlockFileState::kMatches;
  if (contents) *contents = std::move(bf);
  return c;
}

bool block_file_matches(const std::string& path, const nlohmann::json& expected_provenance, std::string* why) {
  BlockFileCheck c = check_block_file(path, expected_provenance);
  if (why) *why = c.why;
  return c.state == BlockFileState::kMatches;
}

}  // namespace glvq
