#include "model/model_files.h"

#include "common/error.h"

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace glvq {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

bool regular_file_exists(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

json read_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GLVQ_CHECK(in.good(), "{}: cannot open for reading", path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for an overflowing number (found by fuzzing)
    GLVQ_FAIL("{}: not valid JSON ({}): the file is corrupt; re-download it", path, e.what());
  }
}

}  // namespace

ModelFiles::ModelFiles(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  GLVQ_CHECK(fs::is_directory(dir, ec), "model directory {} does not exist or is not a directory", dir);
  const fs::path d(dir);

  if (regular_file_exists(d / kIndexName)) {
    index_path_ = (d / kIndexName).string();
    const json j = read_json(index_path_);
    GLVQ_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
               "{}: no 'weight_map' object: not a safetensors index file", index_path_);
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      GLVQ_CHECK(it->is_string() && !it->get<std::string>().empty(),
                 "{}: weight_map entry for tensor {} is {}, expected a shard file name", index_path_,
                 it.key(), it->dump());
      const std::string shard = it->get<std::string>();
      GLVQ_CHECK(fs::path(shard).is_relative(),
                 "{}: tensor {}: shard '{}' is an absolute path; expected a file in the model "
                 "directory",
                 index_path_, it.key(), shard);
      weight_map_[it.key()] = shard;
    }
    GLVQ_CHECK(!weight_map_.empty(), "{}: the weight_map lists no tensors", index_path_);
    std::map<std::string, size_t> per_shard;
    for (const auto& kv : weight_map_) ++per_shard[kv.second];
    for (const auto& kv : weight_map_) {
      const std::string& shard = kv.second;
      const size_t n = per_shard[shard];
      GLVQ_CHECK(regular_file_exists(d / shard),
                 "{}: tensor {} (and {} more) is in shard {}, but {} does not exist: the download is "
                 "incomplete; re-download it",
                 index_path_, kv.first, n - 1, shard, (d / shard).string());
    }
    return;
  }

  if (regular_file_exists(d / kSingleName)) {
    single_file_ = kSingleName;
    return;
  }
  std::vector<std::string> found;
  for (const fs::directory_entry& e : fs::directory_iterator(d, ec)) {
    if (e.path().extension() == ".safetensors" && regular_file_exists(e.path())) {
      found.push_back(e.path().filename().string());
    }
  }
  GLVQ_CHECK(!ec, "model directory {}: cannot list it: {}", dir, ec.message());
  GLVQ_CHECK(!found.empty(),
             "model directory {} has no {}, {} or other *.safetensors file: is this a Hugging Face "
             "model directory with safetensors weights?",
             dir, kIndexName, kSingleName);
  std::sort(found.begin(), found.end());
  GLVQ_CHECK(found.size() == 1,
             "model directory {} has several .safetensors files ({}) but no {}: cannot tell which "
             "tensors are in which file; restore the index file",
             dir, fmt::join(found, ", "), kIndexName);
  single_file_ = found[0];
}

SafetensorsFile& ModelFiles::open_locked(const std::string& file) const {
  auto it = open_.find(file);
  if (it != open_.end()) return *it->second;
  std::shared_ptr<SafetensorsFile> f = SafetensorsFile::open((fs::path(dir_) / file).string());
  // Checked for the whole shard at once, so a stale index fails on first use
  // rather than on whichever tensor happens to be read later.
  for (const auto& kv : weight_map_) {
    GLVQ_CHECK(kv.second != file || f->has(kv.first),
               "{}: the index says tensor {} is in shard {}, but {} has no such tensor: the index and "
               "the shards are from different downloads; re-download the model",
               index_path_, kv.first, file, f->path());
  }
  return *open_.emplace(file, std::move(f)).first->second;
}

SafetensorsFile& ModelFiles::shard_for(const std::string& name) {
  if (index_path_.empty()) {
    SafetensorsFile& f = open_locked(single_file_);
    GLVQ_CHECK(f.has(name), "tensor {} is not in the model at {} ({} has {} tensors): check the name",
               name, dir_, f.path(), f.names().size());
    return f;
  }
  auto it = weight_map_.find(name);
  GLVQ_CHECK(it != weight_map_.end(),
             "tensor {} is not in the model at {} ({} lists {} tensors): check the name", name, dir_,
             index_path_, weight_map_.size());
  return open_locked(it->second);
}

std::vector<std::string> ModelFiles::names() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (index_path_.empty()) return open_locked(single_file_).names();
  std::vector<std::string> out;
  out.reserve(weight_map_.size());
  for (const auto& kv : weight_map_) out.push_back(kv.first);
  return out;
}

bool ModelFiles::has(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (index_path_.empty()) return open_locked(single_file_).has(name);
  return weight_map_.count(name) != 0;
}

const TensorView& ModelFiles::get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  const TensorView& v = shard_for(name).get(name);
  if (read_.insert(name).second) bytes_read_ += v.nbytes;
  return v;
}

const TensorView& ModelFiles::peek(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  return shard_for(name).get(name);
}

std::set<std::string> ModelFiles::tensors_read() const {
  std::lock_guard<std::mutex> lock(mu_);
  return read_;
}

size_t ModelFiles::bytes_read() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_read_;
}

size_t ModelFiles::shards_opened() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_.size();
}

}  // namespace glvq
