#include "report/run_view.h"

#include "common/error.h"
#include "common/fs_util.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <tuple>

namespace glvq {
namespace {

// "model.layers.<b>.<linear>.weight" -> (b, linear); (-1, "") for anything else.
std::pair<int, std::string> split_layer_name(const std::string& name) {
  const std::string pre = "model.layers.", post = ".weight";
  if (name.size() <= pre.size() + post.size() || name.compare(0, pre.size(), pre) != 0 ||
      name.compare(name.size() - post.size(), post.size(), post) != 0)
    return {-1, ""};
  const size_t dot = name.find('.', pre.size());
  if (dot == std::string::npos || dot == pre.size()) return {-1, ""};
  const std::string digits = name.substr(pre.size(), dot - pre.size());
  if (digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return {-1, ""};
  const std::string linear = name.substr(dot + 1, name.size() - post.size() - dot - 1);
  if (linear.empty()) return {-1, ""};
  return {std::atoi(digits.c_str()), linear};
}

std::optional<std::string> json_string(const nlohmann::json& j, const std::string& key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return std::nullopt;
  return j[key].get<std::string>();
}

// report.json's per-layer losses: per_rank[*].layer_losses, merged over ranks.
nlohmann::json report_layer_losses(const nlohmann::json& report) {
  nlohmann::json all = nlohmann::json::object();
  if (!report.contains("per_rank") || !report["per_rank"].is_array()) return all;
  for (const auto& r : report["per_rank"]) {
    if (!r.is_object() || !r.contains("layer_losses") || !r["layer_losses"].is_object()) continue;
    for (auto it = r["layer_losses"].begin(); it != r["layer_losses"].end(); ++it) all[it.key()] = it.value();
  }
  return all;
}

void add_report_losses(LayerView& l, const nlohmann::json& losses) {
  if (!losses.contains(l.name) || !losses[l.name].is_object()) return;
  const nlohmann::json& e = losses[l.name];
  l.rel_loss = json_number(e, "rel_loss");
  if (!l.loss) l.loss = json_number(e, "loss");
  if (!l.loss_init) l.loss_init = json_number(e, "loss_init");
  if (!l.seconds) l.seconds = json_number(e, "seconds");
  // The reference tr(W H W^T) is loss / rel_loss; the start's relative loss uses the same one.
  const auto loss = json_number(e, "loss"), init = json_number(e, "loss_init");
  if (l.rel_loss && loss && init && *loss > 0) l.rel_loss_init = *l.rel_loss * (*init / *loss);
  else if (l.rel_loss && loss && init && *loss == *init) l.rel_loss_init = l.rel_loss;
}

LayerView layer_from_inspect(const nlohmann::json& j, const std::string& where) {
  GLVQ_CHECK(j.is_object() && j.contains("name") && j["name"].is_string() && j.contains("shape") &&
                 j["shape"].is_array() && j["shape"].size() == 2,
             "{}: a layer entry lacks its name or shape", where);
  LayerView l;
  l.name = j["name"].get<std::string>();
  std::tie(l.block, l.linear) = split_layer_name(l.name);
  l.out = j["shape"][0].get<int64_t>();
  l.in = j["shape"][1].get<int64_t>();
  l.method = json_string(j, "method").value_or("");
  if (j.contains("bits") && j["bits"].is_object()) {
    l.bits = json_number(j["bits"], "total");
    l.code_bits = json_number(j["bits"], "codes");
  }
  l.loss = json_number(j, "loss");
  l.loss_init = json_number(j, "loss_init");
  l.seconds = json_number(j, "seconds");
  if (j.contains("bit_groups") && j["bit_groups"].is_object()) {
    for (auto it = j["bit_groups"].begin(); it != j["bit_groups"].end(); ++it) {
      GLVQ_CHECK(it.value().is_number_integer(), "{}: {} bit_groups[{}] is not a count", where, l.name, it.key());
      l.bit_groups[std::atoi(it.key().c_str())] = it.value().get<int64_t>();
    }
  }
  return l;
}

}  // namespace

nlohmann::json read_report_json(const std::string& path) {
  GLVQ_CHECK(file_exists(path), "{} does not exist: not a finished glvq run (the worker writes report.json at the "
             "end of its validate stage)", path);
  const std::string text = read_file(path);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  GLVQ_CHECK(!j.is_discarded(), "{} is not valid JSON (truncated or damaged?)", path);
  GLVQ_CHECK(j.is_object(), "{} holds JSON but not an object: not a glvq report.json", path);
  return j;
}

RunView load_run_dir(const std::string& dir) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  const std::string path = d + "/report.json";
  const nlohmann::json r = read_report_json(path);
  const size_t slash = d.find_last_of('/');
  return make_run_view(r, std::nullopt, slash == std::string::npos ? d : d.substr(slash + 1), path);
}

std::optional<double> json_number(const nlohmann::json& j, const std::string& key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number()) return std::nullopt;
  return j[key].get<double>();
}

const std::vector<std::pair<std::string, std::string>>& llama_linears() {
  static const std::vector<std::pair<std::string, std::string>> v = {
      {"self_attn.q_proj", "q"},  {"self_attn.k_proj", "k"}, {"self_attn.v_proj", "v"},
      {"self_attn.o_proj", "o"},  {"mlp.gate_proj", "gate"}, {"mlp.up_proj", "up"},
      {"mlp.down_proj", "down"}};
  return v;
}

RunView make_run_view(const std::optional<nlohmann::json>& report, const std::optional<nlohmann::json>& inspect,
                      const std::string& title, const std::string& source) {
  GLVQ_CHECK(report || inspect, "{}: a report needs report.json or a checkpoint", source);
  RunView v;
  v.title = title;
  v.source = source;
  v.report = report;
  v.inspect = inspect;
  if (report) {
    GLVQ_CHECK(report->is_object(), "{}: report.json is not a JSON object", source);
    const nlohmann::json& r = *report;
    v.model = json_string(r, "model").value_or("");
    v.method = json_string(r, "method").value_or("");
    v.git_commit = json_string(r, "git_commit").value_or("");
    v.bits_per_weight = json_number(r, "bits_per_weight");
    v.code_bits_per_weight = json_number(r, "code_bits_per_weight");
    v.bits_per_weight_model = json_number(r, "bits_per_weight_model");
    if (r.contains("bits_breakdown") && r["bits_breakdown"].is_object()) v.bits_breakdown = r["bits_breakdown"];
    v.ppl_fp = json_number(r, "ppl_fp");
    v.ppl_quant = json_number(r, "ppl_quant");
    if (r.contains("quality") && r["quality"].is_object()) {
      v.kl_mean = json_number(r["quality"], "kl_mean");
      v.kl_p99 = json_number(r["quality"], "kl_p99");
      v.top1 = json_number(r["quality"], "top1");
    }
    if (r.contains("config") && r["config"].is_object() && r["config"].contains("quant")) {
      if (const auto b = json_number(r["config"]["quant"], "bits")) v.target_bits = static_cast<int>(std::lround(*b));
    }
  }
  if (inspect) {
    const nlohmann::json& s = *inspect;
    GLVQ_CHECK(s.is_object() && s.contains("layers") && s["layers"].is_array(),
               "{}: the checkpoint summary has no layer list", source);
    if (s.contains("root") && s["root"].is_object()) {
      const nlohmann::json& root = s["root"];
      if (v.method.empty()) v.method = json_string(root, "method").value_or("");
      if (v.git_commit.empty()) v.git_commit = json_string(root, "git_commit").value_or("");
      if (!v.bits_per_weight) v.bits_per_weight = json_number(root, "bits_per_weight");
      if (!v.bits_per_weight_model) v.bits_per_weight_model = json_number(root, "bits_per_weight_model");
      if (v.bits_breakdown.empty() && root.contains("bits_breakdown") && root["bits_breakdown"].is_object())
        v.bits_breakdown = root["bits_breakdown"];
      if (!v.code_bits_per_weight && root.contains("bits_breakdown"))
        v.code_bits_per_weight = json_number(root["bits_breakdown"], "codes");
      if (root.contains("config") && root["config"].is_object()) {
        const nlohmann::json& c = root["config"];
        if (v.model.empty() && c.contains("model")) v.model = json_string(c["model"], "path").value_or("");
        if (!v.target_bits && c.contains("quant"))
          if (const auto b = json_number(c["quant"], "bits")) v.target_bits = static_cast<int>(std::lround(*b));
      }
    }
    for (const auto& l : s["layers"]) v.layers.push_back(layer_from_inspect(l, source));
  }
  if (report) {
    const nlohmann::json losses = report_layer_losses(*report);
    if (!inspect) {
      for (auto it = losses.begin(); it != losses.end(); ++it) {
        LayerView l;
        l.name = it.key();
        std::tie(l.block, l.linear) = split_layer_name(l.name);
        l.method = v.method;
        v.layers.push_back(std::move(l));
      }
      std::stable_sort(v.layers.begin(), v.layers.end(),
                       [](const LayerView& a, const LayerView& b) { return a.block < b.block; });
    }
    for (LayerView& l : v.layers) add_report_losses(l, losses);
  }
  return v;
}

}  // namespace glvq
