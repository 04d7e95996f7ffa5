#include "config/config.h"

#include "common/error.h"
#include "config/config_schema.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace glvq {

bool sequential_applies(const QuantConfig& q) { return q.sequential && (q.method == "glvq" || q.method == "gptq"); }

namespace {
using namespace config_detail;

/// Where a value came from: a line of the file, or one --set override (line 0).
struct Where {
  std::string origin;
  int line = 0;
};

std::string where_text(const Where& w) {
  return w.line > 0 ? fmt::format("{}:{}", w.origin, w.line) : w.origin;
}

// Every config error is a UsageError that starts "file:line: " or "--set k=v: ".
#define GLVQ_CONFIG_FAIL(where, ...)                                                        \
  throw ::glvq::UsageError(where_text(where) + ": " + fmt::format(__VA_ARGS__), __FILE__, \
                           __LINE__)

/// 1-based line of N; yaml-cpp's marks are 0-based and -1 when unknown.
int line_of(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  return m.line >= 0 ? m.line + 1 : 1;
}

std::string kind_of(const YAML::Node& n) {
  if (n.IsMap()) return "map";
  if (n.IsSequence()) return "list";
  if (n.IsScalar()) return "scalar '" + n.Scalar() + "'";
  return "null";
}

std::string parent_of(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string children_text(const std::string& section) {
  return fmt::format("{}", fmt::join(section_children(section), ", "));
}

/// Applies a YAML document and then overrides to a Config, remembering where
/// each key was set so that cross-key errors can point at the right line.
class Loader {
 public:
  explicit Loader(std::string origin) : origin_(std::move(origin)) {}

  void apply_document(const YAML::Node& root);
  void apply_override(const std::string& text);
  /// Required keys and rules that involve two keys; run after all overrides.
  void check();

  Config cfg;

 private:
  struct SetAt {
    Where where;
    int order = 0;  ///< later settings have larger numbers
  };

  /// OVERRIDE is "" while walking the file, else the "--set ..." origin.
  void walk_map(const YAML::Node& map, const std::string& prefix, const std::string& override);
  void apply_value(const std::string& path, const YAML::Node& value, const Where& where,
                   bool from_file);
  /// Where a missing key belongs: the line of its nearest section in the file.
  Where missing_where(const std::string& path) const;
  const SetAt* set_at(const std::string& path) const;
  /// Of two keys that conflict, the one set last (the user's latest word).
  const SetAt* later(const std::string& a, const std::string& b) const;
  std::string said_where(const std::string& path) const;

  std::string origin_;
  std::map<std::string, SetAt> set_at_;
  std::map<std::string, int> section_line_;
  int top_line_ = 1;
  int order_ = 0;
};

void Loader::apply_document(const YAML::Node& root) {
  top_line_ = line_of(root);
  if (!root.IsMap())
    GLVQ_CONFIG_FAIL((Where{origin_, top_line_}), "the top level must be a map of keys ({}); got a {}",
                     children_text(""), kind_of(root));
  walk_map(root, "", "");
}

void Loader::walk_map(const YAML::Node& map, const std::string& prefix,
                      const std::string& override) {
  const bool from_file = override.empty();
  const std::string dotted = prefix.empty() ? "" : prefix + ".";
  // yaml-cpp keeps both entries of a repeated key, so iterating finds duplicates.
  std::map<std::string, int> seen;
  // `kv` is a value (yaml-cpp's iterators return proxies): bind it, not it->first.
  for (const auto& kv : map) {
    const YAML::Node& key = kv.first;
    const Where w = from_file ? Where{origin_, line_of(key)} : Where{override, 0};
    if (!key.IsScalar())
      GLVQ_CONFIG_FAIL(w, "{}: keys must be plain names; got a {} as a key",
                       prefix.empty() ? "top level" : prefix, kind_of(key));
    const std::string& name = key.Scalar();
    if (name.empty())
      GLVQ_CONFIG_FAIL(w, "{}: keys must be plain names; got an empty key",
                       prefix.empty() ? "top level" : prefix);
    const std::string path = dotted + name;
    if (name.find('.') != std::string::npos)
      GLVQ_CONFIG_FAIL(w, "{}: key names cannot contain '.'; nest them instead (quant: {{bits: 2}})",
                       path);
    auto [first, fresh] = seen.emplace(name, w.line);
    if (!fresh) {
      if (from_file)
        GLVQ_CONFIG_FAIL(w, "{}: duplicate key (first given on line {}); give each key once",
                         path, first->second);
      GLVQ_CONFIG_FAIL(w, "{}: duplicate key; give each key once", path);
    }
    apply_value(path, kv.second, w, from_file);
  }
}

void Loader::apply_value(const std::string& path, const YAML::Node& value, const Where& w,
                         bool from_file) {
  if (const KeySpec* spec = find_key(path)) {
    const std::string problem = set_key(cfg, *spec, value);
    if (!problem.empty()) GLVQ_CONFIG_FAIL(w, "{}: {}", path, problem);
    set_at_[path] = SetAt{w, ++order_};
    return;
  }
  if (is_section(path) && !path.empty()) {
    if (from_file) section_line_[path] = w.line;
    if (value.IsMap()) {
      walk_map(value, path, from_file ? "" : w.origin);
      return;
    }
    // A section whose keys are all commented out keeps the defaults.
    if (value.IsNull() && from_file) return;
    GLVQ_CONFIG_FAIL(w, "{}: {}; expected a map of keys ({})", path,
                     value.IsNull() ? "no value" : "got a " + kind_of(value), children_text(path));
  }
  GLVQ_CONFIG_FAIL(w, "unknown key {}{}", path, suggest_key(path));
}

void Loader::apply_override(const std::string& text) {
  const Where w{"--set " + text, 0};
  const size_t eq = text.find('=');
  if (eq == std::string::npos)
    GLVQ_CONFIG_FAIL(w, "expected key.path=value (e.g. --set quant.bits=2)");
  const std::string key = trim(text.substr(0, eq));
  if (key.empty()) GLVQ_CONFIG_FAIL(w, "no key before '='; expected key.path=value");
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    GLVQ_CONFIG_FAIL(w, "{}: malformed value ({}); expected a YAML scalar or flow value", key,
                     e.msg);
  }
  apply_value(key, value, w, false);
}

const Loader::SetAt* Loader::set_at(const std::string& path) const {
  auto it = set_at_.find(path);
  return it == set_at_.end() ? nullptr : &it->second;
}

const Loader::SetAt* Loader::later(const std::string& a, const std::string& b) const {
  const SetAt* sa = set_at(a);
  const SetAt* sb = set_at(b);
  if (!sa) return sb;
  if (!sb) return sa;
  return sa->order > sb->order ? sa : sb;
}

Where Loader::missing_where(const std::string& path) const {
  for (std::string s = parent_of(path); !s.empty(); s = parent_of(s)) {
    auto it = section_line_.find(s);
    if (it != section_line_.end()) return Where{origin_, it->second};
  }
  return Where{origin_, top_line_};
}

std::string Loader::said_where(const std::string& path) const {
  const SetAt* s = set_at(path);
  if (!s) return "by default";
  return s->where.line > 0 ? fmt::format("on line {}", s->where.line) : "by " + s->where.origin;
}

void Loader::check() {
  for (const KeySpec& k : config_keys())
    if (k.required && k.string_ref(cfg).empty())
      GLVQ_CONFIG_FAIL(missing_where(k.path),
                       "{}: missing required key; expected {} (add it to the file or pass --set "
                       "{}=...)",
                       k.path, expected_text(k), k.path);

  if (cfg.quant.method != "none" && cfg.data.calib.empty())
    GLVQ_CONFIG_FAIL(missing_where("data.calib"),
                     "data.calib: missing required key; quant.method is {} ({}), which needs "
                     "calibration text (set data.calib, or quant.method: none)",
                     cfg.quant.method, said_where("quant.method"));

  const GlvqConfig& g = cfg.quant.glvq;
  if (g.group_size > 0 && g.group_size % g.dim != 0) {
    const SetAt* blame = later("quant.glvq.group_size", "quant.glvq.dim");
    const Where w = blame ? blame->where : missing_where("quant.glvq.dim");
    if (blame == set_at("quant.glvq.dim"))
      GLVQ_CONFIG_FAIL(w,
                       "quant.glvq.dim: {} does not divide quant.glvq.group_size ({}); expected a "
                       "divisor of the group size (or quant.glvq.group_size: 0 for whole rows)",
                       g.dim, g.group_size);
    GLVQ_CONFIG_FAIL(w,
                     "quant.glvq.group_size: {} is not a multiple of quant.glvq.dim ({}); expected "
                     "0 (whole row) or a multiple of {}",
                     g.group_size, g.dim, g.dim);
  }
  if (cfg.quant.method == "glvq" && g.code == "shaped") {
    // The shaped codebooks are 8-dimensional (quant/glvq_codebook.h) and have no companding.
    if (g.dim % 8 != 0) {
      const SetAt* blame = later("quant.glvq.dim", "quant.glvq.code");
      GLVQ_CONFIG_FAIL(blame ? blame->where : missing_where("quant.glvq.dim"),
                       "quant.glvq.dim: {} is not a multiple of 8, which quant.glvq.code: shaped needs; "
                       "expected 8, 16, 32, ... (or quant.glvq.code: box)",
                       g.dim);
    }
    if (g.companding) {
      const SetAt* blame = later("quant.glvq.companding", "quant.glvq.code");
      GLVQ_CONFIG_FAIL(blame ? blame->where : missing_where("quant.glvq.companding"),
                       "quant.glvq.companding: true does not apply to quant.glvq.code: shaped; expected "
                       "false (or quant.glvq.code: box)");
    }
  }
  if (cfg.quant.finetune.unquantized && !cfg.quant.finetune.block) {
    const SetAt* blame = later("quant.finetune.unquantized", "quant.finetune.block");
    GLVQ_CONFIG_FAIL(blame ? blame->where : missing_where("quant.finetune.block"),
                     "quant.finetune.unquantized: true tunes the not-yet-quantized linears as part of block "
                     "fine-tuning; expected quant.finetune.block: true as well (or unquantized: false)");
  }
  if (sequential_applies(cfg.quant) && cfg.quant.finetune.unquantized) {
    const SetAt* blame = later("quant.sequential", "quant.finetune.unquantized");
    GLVQ_CONFIG_FAIL(blame ? blame->where : missing_where("quant.sequential"),
                     "quant.sequential and quant.finetune.unquantized both change what the later linears of a "
                     "block are quantized from; expected one of them (set the other false)");
  }
  if (!(g.sigma_max > g.sigma_min)) {
    const SetAt* blame = later("quant.glvq.sigma_max", "quant.glvq.sigma_min");
    const Where w = blame ? blame->where : missing_where("quant.glvq.sigma_max");
    if (blame == set_at("quant.glvq.sigma_min"))
      GLVQ_CONFIG_FAIL(w,
                       "quant.glvq.sigma_min: {} is not below quant.glvq.sigma_max ({}); expected "
                       "sigma_min < sigma_max",
                       g.sigma_min, g.sigma_max);
    GLVQ_CONFIG_FAIL(w,
                     "quant.glvq.sigma_max: {} is not above quant.glvq.sigma_min ({}); expected "
                     "sigma_max > sigma_min",
                     g.sigma_max, g.sigma_min);
  }
}

/// Where each YAML document of a text begins (its first node), read with yaml-cpp's
/// event parser: YAML::LoadAll loops forever, allocating, on some malformed texts (a
/// stray ',' at the top level), because the parser then makes no progress between
/// documents. Two documents are enough to know the config is not a single map.
struct DocumentStarts {
  std::vector<YAML::Mark> marks;
  std::optional<YAML::Mark> stuck_at;  ///< set when the parser stopped advancing
};

class FirstNodeMarks : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;
  void OnDocumentStart(const YAML::Mark& m) override {
    marks.push_back(m);
    fresh_ = true;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t, const std::string&) override { node(m); }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    node(m);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& m) {
    if (fresh_) marks.back() = m;
    fresh_ = false;
  }
  bool fresh_ = false;
};

DocumentStarts document_starts(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  FirstNodeMarks h;
  DocumentStarts out;
  int last_pos = -1;
  for (int doc = 0; doc < 2; ++doc) {
    const size_t before = h.marks.size();
    if (!parser.HandleNextDocument(h)) break;
    if (h.marks.size() > before) {
      const YAML::Mark& m = h.marks.back();
      if (m.pos <= last_pos) {
        out.stuck_at = m;
        break;
      }
      last_pos = m.pos;
    }
  }
  out.marks = h.marks;
  return out;
}


}  // namespace

Config parse_config(const std::string& yaml_text, const std::string& origin,
                    const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    const DocumentStarts starts = document_starts(yaml_text);
    if (starts.stuck_at) {
      const YAML::Mark& m = *starts.stuck_at;
      const char c = m.pos >= 0 && static_cast<size_t>(m.pos) < yaml_text.size() ? yaml_text[m.pos] : '?';
      GLVQ_CONFIG_FAIL((Where{origin, m.line + 1}), "malformed YAML (column {}): unexpected '{}'",
                       m.column + 1, std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "?");
    }
    if (starts.marks.size() > 1)
      GLVQ_CONFIG_FAIL((Where{origin, starts.marks[1].line + 1}),
                       "a second YAML document starts here; a config is a single map (remove '---')");
    if (!starts.marks.empty()) root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    const int line = e.mark.line >= 0 ? e.mark.line + 1 : 1;
    GLVQ_CONFIG_FAIL((Where{origin, line}), "malformed YAML (column {}): {}", e.mark.column + 1,
                     e.msg);
  }
  if (!root.IsDefined() || root.IsNull())
    GLVQ_CONFIG_FAIL((Where{origin, 1}),
                     "the config is empty; expected a map with at least model.path, data.eval and "
                     "output_dir");

  Loader loader(origin);
  loader.apply_document(root);
  for (const std::string& o : overrides) loader.apply_override(o);
  loader.check();
  loader.cfg.source_file = origin;
  return loader.cfg;
}

Config load_config(const std::string& file, const std::vector<std::string>& overrides) {
  std::error_code ec;
  GLVQ_USAGE_CHECK(!std::filesystem::is_directory(file, ec),
                   "{}: is a directory; expected a YAML config file", file);
  std::ifstream in(file, std::ios::binary);
  GLVQ_USAGE_CHECK(in.is_open(), "{}: cannot open the config file: {}", file,
                   std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  GLVQ_USAGE_CHECK(!in.bad(), "{}: cannot read the config file: {}", file, std::strerror(errno));
  return parse_config(text.str(), file, overrides);
}

nlohmann::json config_to_json(const Config& cfg) {
  nlohmann::json j = nlohmann::json::object();
  for (const KeySpec& k : config_keys()) {
    std::string pointer = "/" + k.path;
    std::replace(pointer.begin(), pointer.end(), '.', '/');
    j[nlohmann::json::json_pointer(pointer)] = key_to_json(cfg, k);
  }
  return j;
}

nlohmann::json quant_config_to_json(const Config& cfg) {
  const nlohmann::json all = config_to_json(cfg);
  nlohmann::json quant = nlohmann::json::object();
  quant["method"] = cfg.quant.method;
  quant["bits"] = cfg.quant.bits;
  // Only the active method's settings: editing another method's section must
  // not invalidate a finished run.
  if (all["quant"].contains(cfg.quant.method)) quant[cfg.quant.method] = all["quant"][cfg.quant.method];
  // Off (or for RTN, which ignores it), the key stays out: runs made before it existed still match.
  if (sequential_applies(cfg.quant)) quant["sequential"] = true;
  // Fine-tuning changes the result only when it runs: with it off, runs made before it existed still match.
  if (cfg.quant.finetune.block) {
    quant["finetune"] = all["quant"]["finetune"];
    // End-to-end fine-tuning runs in gather, after the block files exist: not a block's setting.
    for (const char* k : {"e2e", "e2e_steps", "e2e_lr"}) quant["finetune"].erase(k);
    // Off, the key leaves the provenance: block fine-tuned runs made before it existed still match.
    if (!cfg.quant.finetune.unquantized) quant["finetune"].erase("unquantized");
  }
  nlohmann::json calib = nlohmann::json::object();
  for (const char* key : {"ctx", "samples", "seed", "propagate"}) calib[key] = all["calib"][key];
  // Held in bfloat16, the activations round: a different result. float32 stays out, so runs made
  // before the key existed still match.
  if (cfg.calib.activation_dtype != "float32") calib["activation_dtype"] = cfg.calib.activation_dtype;
  nlohmann::json out = nlohmann::json::object();
  out["quant"] = std::move(quant);
  out["calib"] = std::move(calib);
  out["seed"] = cfg.seed;
  return out;
}

}  // namespace glvq
