#include "ckpt/export.h"

#include "ckpt/checkpoint.h"
#include "ckpt/h5_util.h"
#include "common/error.h"
#include "common/fs_util.h"
#include "common/preempt.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <regex>
#include <set>

namespace glvq {
namespace {

/// The model's dtype as config.json names it; nullopt when it does not say.
std::optional<DType> config_dtype(const nlohmann::json& cfg, const std::string& file) {
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!cfg.contains(key) || !cfg[key].is_string()) continue;
    const std::string s = cfg[key].get<std::string>();
    if (s == "bfloat16") return DType::BF16;
    if (s == "float16") return DType::F16;
    if (s == "float32") return DType::F32;
    GLVQ_FAIL("{}: the stored config.json has {} = \"{}\"; export writes bfloat16, float16 or float32 weights",
              file, key, s);
  }
  return std::nullopt;
}

struct Item {
  std::string name;
  bool quantized = false;
  size_t nbytes = 0;
};

void copy_file(const std::string& from, const std::string& to) { write_file_atomic(to, read_file(from)); }

}  // namespace

ExportResult export_checkpoint(const std::string& file, const std::string& dir, const ExportOptions& opt) {
  CheckpointReader ck(file);
  ExportResult res;
  const std::string model_config = ck.root_attr_text("model_config");
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(model_config);
  } catch (const nlohmann::json::exception& e) {
    GLVQ_FAIL("{}: the model_config attribute is not valid JSON ({})", file, e.what());
  }
  DType dtype = DType::F32;
  if (auto d = config_dtype(cfg, file)) {
    dtype = *d;
  } else if (ck.has_tensor("model.embed_tokens.weight")) {
    dtype = ck.tensor_info("model.embed_tokens.weight").dtype;
  }
  GLVQ_CHECK(dtype == DType::BF16 || dtype == DType::F16 || dtype == DType::F32,
             "{}: the model's dtype {} is not a float type export can write", file, dtype_name(dtype));
  res.dtype = dtype_name(dtype);

  // Plan the shards first: their count is part of every shard's name.
  std::vector<Item> items;
  for (const std::string& n : ck.tensor_names()) items.push_back({n, false, ck.tensor_info(n).nbytes});
  for (const std::string& n : ck.layer_names()) {
    const QuantizedLinear h = ck.layer_header(n);
    items.push_back({n, true, static_cast<size_t>(h.out * h.in) * dtype_size(dtype)});
  }
  ensure_dir(dir);
  std::vector<std::vector<size_t>> shards(1);
  size_t shard_bytes = 0, total_bytes = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!shards.back().empty() && shard_bytes + items[i].nbytes > opt.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += items[i].nbytes;
    total_bytes += items[i].nbytes;
  }

  const bool single = shards.size() == 1;
  nlohmann::json weight_map = nlohmann::json::object();
  std::set<std::string> weight_files;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name =
        single ? "model.safetensors" : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    std::vector<at::Tensor> keep;
    std::vector<TensorToWrite> out;
    keep.reserve(shards[s].size());
    for (size_t i : shards[s]) {
      throw_if_preempted("glvq-export (between tensors; every file written is whole, the export is not: run it again)");
      const Item& it = items[i];
      at::Tensor t = it.quantized ? dequantize(ck.layer(it.name)).to(scalar_type_of(dtype)).contiguous()
                                  : ck.tensor(it.name);
      keep.push_back(t);
      TensorToWrite w;
      w.name = it.name;
      w.dtype = dtype_of(t.scalar_type());
      w.shape.assign(t.sizes().begin(), t.sizes().end());
      w.data = t.data_ptr();
      out.push_back(w);
      weight_map[it.name] = name;
    }
    write_safetensors(dir + "/" + name, out, {{"format", "pt"}});
    res.files.push_back(name);
    weight_files.insert(name);
  }
  // Loaders prefer one layout over the other: a stale file of the other layout would shadow this export.
  const std::string stale = single ? dir + "/model.safetensors.index.json" : dir + "/model.safetensors";
  if (file_exists(stale)) {
    ::unlink(stale.c_str());
    res.warnings.push_back(fmt::format("removed {} left by an earlier export", stale));
  }
  // Shards of an earlier, larger export would be dead weight (and confuse a reader globbing *.safetensors).
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (std::regex_match(f, std::regex(R"(model-\d{5}-of-\d{5}\.safetensors)")) && !weight_files.count(f)) {
      std::filesystem::remove(e.path());
      res.warnings.push_back(fmt::format("removed {}/{} left by an earlier export", dir, f));
    }
  }
  if (!single) {
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}};
    write_file_atomic(dir + "/model.safetensors.index.json", index.dump(2) + "\n");
    res.files.push_back("model.safetensors.index.json");
  }
  write_file_atomic(dir + "/config.json", model_config);
  res.files.push_back("config.json");

  std::string tok = opt.tokenizer_dir;
  if (tok.empty()) {
    const nlohmann::json run = ck.root_attrs().value("config", nlohmann::json::object());
    if (run.is_object() && run.contains("model") && run["model"].is_object() && run["model"].contains("path") &&
        run["model"]["path"].is_string()) {
      tok = run["model"]["path"].get<std::string>();
    }
  }
  bool have_tokenizer = false;
  if (tok.empty()) {
    res.warnings.push_back(fmt::format("{} records no model.path: no tokenizer copied (give one with "
                                       "--tokenizer-from DIR)", file));
  } else if (!file_exists(tok)) {
    res.warnings.push_back(fmt::format("tokenizer directory {} does not exist: no tokenizer copied (give one with "
                                       "--tokenizer-from DIR)", tok));
  } else {
    for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "added_tokens.json", "generation_config.json"}) {
      const std::string src = tok + "/" + f;
      if (!file_exists(src)) continue;
      copy_file(src, dir + "/" + f);
      res.files.push_back(f);
      if (std::string(f) == "tokenizer.model" || std::string(f) == "tokenizer.json") have_tokenizer = true;
    }
    if (!have_tokenizer) {
      res.warnings.push_back(fmt::format("{} has neither tokenizer.model nor tokenizer.json: the export has no "
                                         "tokenizer", tok));
    }
  }
  return res;
}

}  // namespace glvq
