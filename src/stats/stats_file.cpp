#include "stats/stats_file.h"

#include "ckpt/h5_util.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "common/log.h"

#include <unistd.h>

#include <cstdio>

namespace glvq {
namespace {

const char* kTapNames[4] = {"attn_in", "o_in", "mlp_in", "down_in"};

// Writes through FILL into PATH.tmp-<pid>, then renames: a reader sees a whole file or none.
template <typename Fill>
void write_h5_atomic(const std::string& path, const std::string& kind, const nlohmann::json& provenance, Fill fill) {
  const std::string tmp = path + ".tmp-" + std::to_string(getpid());
  try {
    H5Handle f = h5_create(tmp);
    h5_set_attr(f.id(), "format", kind);
    h5_set_attr_json(f.id(), "provenance", provenance);
    fill(f.id());
    h5_close_file(f, tmp);
    fsync_and_rename(tmp, path);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

// Opens PATH when it is a readable KIND file made under PROVENANCE; logs why not otherwise.
std::optional<H5Handle> open_matching(const std::string& path, const std::string& kind,
                                      const nlohmann::json& provenance) {
  if (!file_exists(path)) return std::nullopt;
  try {
    H5Handle f = h5_open_read(path, kind);
    if (h5_get_attr_string(f.id(), "format", path) != kind) return std::nullopt;
    if (h5_get_attr_json(f.id(), "provenance", path) != provenance) {
      log_info("{}: made under other settings; recomputing it", path);
      return std::nullopt;
    }
    return f;
  } catch (const Error& e) {
    log_warn("{}: unreadable ({}); recomputing it", path, e.what());
    return std::nullopt;
  }
}

}  // namespace

std::string stats_path(const std::string& output_dir, int block) {
  return fmt::format("{}/stats/block-{}.h5", output_dir, block);
}

std::string inputs_path(const std::string& output_dir, int first_block) {
  return fmt::format("{}/stats/inputs-block-{}.h5", output_dir, first_block);
}

void save_block_stats(const std::string& path, const BlockStats& s, const nlohmann::json& provenance) {
  write_h5_atomic(path, "glvq-stats", provenance, [&](hid_t f) {
    h5_set_attr(f, "tokens", s.tokens);
    for (int t = 0; t < 4; ++t) h5_write_tensor(f, kTapNames[t], s.H[t].to(at::kCPU).contiguous(), {}, path);
  });
}

std::optional<BlockStats> load_block_stats(const std::string& path, const nlohmann::json& provenance) {
  auto f = open_matching(path, "glvq-stats", provenance);
  if (!f) return std::nullopt;
  try {
    BlockStats s;
    s.tokens = h5_get_attr_int(f->id(), "tokens", path);
    for (int t = 0; t < 4; ++t) s.H[t] = h5_read_tensor(f->id(), kTapNames[t], path);
    return s;
  } catch (const Error& e) {
    log_warn("{}: unreadable ({}); recomputing it", path, e.what());
    return std::nullopt;
  }
}

void save_activations(const std::string& path, const std::vector<at::Tensor>& acts, const nlohmann::json& provenance) {
  write_h5_atomic(path, "glvq-activations", provenance, [&](hid_t f) {
    h5_set_attr(f, "count", static_cast<int64_t>(acts.size()));
    for (size_t i = 0; i < acts.size(); ++i)
      h5_write_tensor(f, fmt::format("mb{}", i), acts[i].to(at::kCPU).contiguous(), {}, path);
  });
}

std::optional<std::vector<at::Tensor>> load_activations(const std::string& path, const nlohmann::json& provenance) {
  auto f = open_matching(path, "glvq-activations", provenance);
  if (!f) return std::nullopt;
  try {
    std::vector<at::Tensor> acts(h5_get_attr_int(f->id(), "count", path));
    for (size_t i = 0; i < acts.size(); ++i) acts[i] = h5_read_tensor(f->id(), fmt::format("mb{}", i), path);
    return acts;
  } catch (const Error& e) {
    log_warn("{}: unreadable ({}); recomputing it", path, e.what());
    return std::nullopt;
  }
}

}  // namespace glvq
