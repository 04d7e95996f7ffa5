#include "config/config_schema.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <limits>
#include <regex>

namespace glvq {
namespace config_detail {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const char* const kStrTag = "tag:yaml.org,2002:str";
const char* const kIntTag = "tag:yaml.org,2002:int";
const char* const kFloatTag = "tag:yaml.org,2002:float";
const char* const kBoolTag = "tag:yaml.org,2002:bool";

KeySpec k_int(const char* path, int& (*ref)(Config&), long long lo, long long hi = INT_MAX) {
  KeySpec s;
  s.path = path;
  s.type = KeyType::Int;
  s.lo = static_cast<double>(lo);
  s.hi = static_cast<double>(hi);
  s.has_hi = hi != INT_MAX;
  s.int_ref = ref;
  return s;
}

KeySpec k_uint(const char* path, uint64_t& (*ref)(Config&)) {
  KeySpec s;
  s.path = path;
  s.type = KeyType::Uint;
  s.uint_ref = ref;
  return s;
}

/// A real number in lo..hi; an infinite HI means no upper bound.
KeySpec k_num(const char* path, double& (*ref)(Config&), double lo, bool lo_open, double hi = kInf,
              bool hi_open = false) {
  KeySpec s;
  s.path = path;
  s.type = KeyType::Double;
  s.lo = lo;
  s.lo_open = lo_open;
  s.hi = hi;
  s.has_hi = std::isfinite(hi);
  s.hi_open = hi_open;
  s.double_ref = ref;
  return s;
}

KeySpec k_bool(const char* path, bool& (*ref)(Config&)) {
  KeySpec s;
  s.path = path;
  s.type = KeyType::Bool;
  s.bool_ref = ref;
  return s;
}

KeySpec k_str(const char* path, std::string& (*ref)(Config&), bool required) {
  KeySpec s;
  s.path = path;
  s.type = KeyType::String;
  s.required = required;
  s.string_ref = ref;
  return s;
}

KeySpec k_enum(const char* path, std::string& (*ref)(Config&), std::vector<std::string> choices) {
  KeySpec s;
  s.path = path;
  s.type = KeyType::Enum;
  s.choices = std::move(choices);
  s.string_ref = ref;
  return s;
}

// Captureless lambdas decay to the plain function pointers KeySpec stores.
#define GLVQ_REF(T, member) [](Config& c) -> T& { return c.member; }

std::vector<KeySpec> build_keys() {
  constexpr bool kOpen = true, kClosed = false;
  return {
      k_str("model.path", GLVQ_REF(std::string, model.path), true),
      k_str("data.calib", GLVQ_REF(std::string, data.calib), false),
      k_str("data.eval", GLVQ_REF(std::string, data.eval), true),
      k_int("calib.ctx", GLVQ_REF(int, calib.ctx), 16, 131072),
      k_int("calib.samples", GLVQ_REF(int, calib.samples), 1, 100000),
      k_uint("calib.seed", GLVQ_REF(uint64_t, calib.seed)),
      k_int("calib.micro_batch", GLVQ_REF(int, calib.micro_batch), 1, 1024),
      k_enum("calib.propagate", GLVQ_REF(std::string, calib.propagate), {"fp", "quantized"}),
      k_enum("calib.activation_dtype", GLVQ_REF(std::string, calib.activation_dtype), {"float32", "bfloat16"}),
      k_bool("calib.keep_stats", GLVQ_REF(bool, calib.keep_stats)),
      k_int("eval.ctx", GLVQ_REF(int, eval.ctx), 16, 131072),
      k_int("eval.max_chunks", GLVQ_REF(int, eval.max_chunks), 0),
      k_int("eval.micro_batch", GLVQ_REF(int, eval.micro_batch), 1, 1024),
      k_enum("quant.method", GLVQ_REF(std::string, quant.method), {"none", "rtn", "gptq", "glvq"}),
      k_num("quant.bits", GLVQ_REF(double, quant.bits), 1, kClosed, 8, kClosed),
      k_int("quant.glvq.dim", GLVQ_REF(int, quant.glvq.dim), 2, 64),
      k_int("quant.glvq.group_size", GLVQ_REF(int, quant.glvq.group_size), 0),
      k_int("quant.glvq.iters", GLVQ_REF(int, quant.glvq.iters), 0, 100000),
      k_num("quant.glvq.lr", GLVQ_REF(double, quant.glvq.lr), 0, kOpen),
      k_num("quant.glvq.lambda", GLVQ_REF(double, quant.glvq.lambda), 0, kClosed),
      k_num("quant.glvq.sigma_min", GLVQ_REF(double, quant.glvq.sigma_min), 0, kOpen),
      k_num("quant.glvq.sigma_max", GLVQ_REF(double, quant.glvq.sigma_max), 0, kOpen),
      k_num("quant.glvq.eps", GLVQ_REF(double, quant.glvq.eps), 0, kClosed),
      k_bool("quant.glvq.companding", GLVQ_REF(bool, quant.glvq.companding)),
      k_enum("quant.glvq.rounding", GLVQ_REF(std::string, quant.glvq.rounding),
             {"round_off", "nearest_plane", "babai"}),
      k_bool("quant.glvq.bit_alloc", GLVQ_REF(bool, quant.glvq.bit_alloc)),
      k_bool("quant.glvq.error_feedback", GLVQ_REF(bool, quant.glvq.error_feedback)),
      k_bool("quant.glvq.incoherence", GLVQ_REF(bool, quant.glvq.incoherence)),
      k_enum("quant.glvq.code", GLVQ_REF(std::string, quant.glvq.code), {"box", "shaped"}),
      k_int("quant.glvq.lloyd_iters", GLVQ_REF(int, quant.glvq.lloyd_iters), 0, 1000),
      k_int("quant.glvq.candidates", GLVQ_REF(int, quant.glvq.candidates), 1, 16),
      k_num("quant.gptq.damp", GLVQ_REF(double, quant.gptq.damp), 0, kOpen, 1, kOpen),
      k_bool("quant.gptq.act_order", GLVQ_REF(bool, quant.gptq.act_order)),
      k_int("quant.gptq.group_size", GLVQ_REF(int, quant.gptq.group_size), 0),
      k_bool("quant.gptq.static_groups", GLVQ_REF(bool, quant.gptq.static_groups)),
      k_int("quant.rtn.group_size", GLVQ_REF(int, quant.rtn.group_size), 0),
      k_bool("quant.sequential", GLVQ_REF(bool, quant.sequential)),
      k_bool("quant.finetune.block", GLVQ_REF(bool, quant.finetune.block)),
      k_int("quant.finetune.steps", GLVQ_REF(int, quant.finetune.steps), 1, 1000000),
      k_num("quant.finetune.lr", GLVQ_REF(double, quant.finetune.lr), 0, kOpen),
      k_int("quant.finetune.batch", GLVQ_REF(int, quant.finetune.batch), 1, 1024),
      k_num("quant.finetune.heldout", GLVQ_REF(double, quant.finetune.heldout), 0, kOpen, 1, kOpen),
      k_int("quant.finetune.eval_every", GLVQ_REF(int, quant.finetune.eval_every), 1, 1000000),
      k_int("quant.finetune.patience", GLVQ_REF(int, quant.finetune.patience), 1, 1000),
      k_bool("quant.finetune.unquantized", GLVQ_REF(bool, quant.finetune.unquantized)),
      k_bool("quant.finetune.e2e", GLVQ_REF(bool, quant.finetune.e2e)),
      k_int("quant.finetune.e2e_steps", GLVQ_REF(int, quant.finetune.e2e_steps), 1, 1000000),
      k_num("quant.finetune.e2e_lr", GLVQ_REF(double, quant.finetune.e2e_lr), 0, kOpen),
      k_enum("device", GLVQ_REF(std::string, device), {"auto", "cpu", "cuda"}),
      k_enum("transport", GLVQ_REF(std::string, transport), {"auto", "mpi", "nccl"}),
      k_int("comm_timeout_s", GLVQ_REF(int, comm_timeout_s), 0),
      k_int("preempt_grace_s", GLVQ_REF(int, preempt_grace_s), 0),
      k_str("output_dir", GLVQ_REF(std::string, output_dir), true),
      k_int("threads", GLVQ_REF(int, threads), 0),
      k_uint("seed", GLVQ_REF(uint64_t, seed)),
  };
}
#undef GLVQ_REF

const std::vector<std::string>& all_sections() {
  static const std::vector<std::string> s = {"",     "model",      "data",       "calib",    "eval",
                                             "quant", "quant.glvq", "quant.gptq", "quant.rtn",
                                             "quant.finetune"};
  return s;
}

std::string parent_of(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

std::string last_of(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

/// Every key and section path, for suggestions.
std::vector<std::string> all_paths() {
  std::vector<std::string> out;
  for (const auto& s : all_sections())
    if (!s.empty()) out.push_back(s);
  for (const auto& k : config_keys()) out.push_back(k.path);
  return out;
}

std::string join_or(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " or " : ", ";
    out += items[i];
  }
  return out;
}

std::string fmt_bound(double v) { return fmt::format("{}", v); }

/// The scalar as the user wrote it, quoted when it was a quoted string.
std::string shown(const YAML::Node& v) {
  std::string s = v.Scalar();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return v.Tag() == "!" ? "\"" + s + "\"" : s;
}

const std::regex& int_re() {
  static const std::regex re("[-+]?[0-9]+");
  return re;
}
const std::regex& float_re() {
  static const std::regex re("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  return re;
}
const std::regex& special_float_re() {
  static const std::regex re("[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN)");
  return re;
}

bool in_range(const KeySpec& s, double v) {
  if (s.lo_open ? !(v > s.lo) : !(v >= s.lo)) return false;
  if (s.has_hi && (s.hi_open ? !(v < s.hi) : !(v <= s.hi))) return false;
  return true;
}

/// Why a numeric/bool key refuses a non-plain scalar, or "" when the tag is fine.
std::string tag_problem(const YAML::Node& v, const char* own_tag, const std::string& expected) {
  const std::string& tag = v.Tag();
  if (tag == "?" || tag == own_tag) return "";
  if (tag == "!" || tag == kStrTag)
    return fmt::format("{} is a quoted string; expected {} (write it without quotes)", shown(v),
                       expected);
  return fmt::format("unsupported tag '{}' on {}; expected {}", tag, shown(v), expected);
}

std::string set_int(Config& cfg, const KeySpec& s, const YAML::Node& v, const std::string& exp) {
  std::string p = tag_problem(v, kIntTag, exp);
  if (!p.empty()) return p;
  const std::string& t = v.Scalar();
  if (!std::regex_match(t, int_re())) {
    if (std::regex_match(t, float_re()) || std::regex_match(t, special_float_re()))
      return fmt::format("{} is not an integer; expected {}", t, exp);
    return fmt::format("'{}' is not a number; expected {}", shown(v), exp);
  }
  const char* b = t.data() + (t[0] == '+' ? 1 : 0);
  long long x = 0;
  auto r = std::from_chars(b, t.data() + t.size(), x);
  if (r.ec != std::errc() || x > INT_MAX || x < INT_MIN)
    return fmt::format("{} is out of range; expected {}", t,
                       s.has_hi ? exp : fmt::format("an integer in [{}, {}]", s.lo, INT_MAX));
  if (!in_range(s, static_cast<double>(x)))
    return fmt::format("{} is out of range; expected {}", t, exp);
  s.int_ref(cfg) = static_cast<int>(x);
  return "";
}

std::string set_uint(Config& cfg, const KeySpec& s, const YAML::Node& v, const std::string& exp) {
  std::string p = tag_problem(v, kIntTag, exp);
  if (!p.empty()) return p;
  const std::string& t = v.Scalar();
  if (!std::regex_match(t, int_re())) {
    if (std::regex_match(t, float_re()) || std::regex_match(t, special_float_re()))
      return fmt::format("{} is not an integer; expected {}", t, exp);
    return fmt::format("'{}' is not a number; expected {}", shown(v), exp);
  }
  if (t[0] == '-') return fmt::format("{} is out of range; expected {}", t, exp);
  const char* b = t.data() + (t[0] == '+' ? 1 : 0);
  uint64_t x = 0;
  auto r = std::from_chars(b, t.data() + t.size(), x);
  if (r.ec != std::errc()) return fmt::format("{} is out of range; expected {}", t, exp);
  s.uint_ref(cfg) = x;
  return "";
}

std::string set_double(Config& cfg, const KeySpec& s, const YAML::Node& v, const std::string& exp) {
  std::string p = tag_problem(v, kFloatTag, exp);
  if (!p.empty() && v.Tag() != kIntTag) return p;
  const std::string& t = v.Scalar();
  if (std::regex_match(t, special_float_re()))
    return fmt::format("{} is not a finite number; expected {}", t, exp);
  if (!std::regex_match(t, float_re()))
    return fmt::format("'{}' is not a number; expected {}", shown(v), exp);
  // from_chars, unlike strtod, ignores the C locale's decimal separator.
  const char* b = t.data() + (t[0] == '+' ? 1 : 0);
  double x = 0;
  auto r = std::from_chars(b, t.data() + t.size(), x);
  if (r.ec != std::errc() || !std::isfinite(x) || !in_range(s, x))
    return fmt::format("{} is out of range; expected {}", t, exp);
  s.double_ref(cfg) = x;
  return "";
}

std::string set_bool(Config& cfg, const KeySpec& s, const YAML::Node& v, const std::string& exp) {
  std::string p = tag_problem(v, kBoolTag, exp);
  if (!p.empty()) return p;
  const std::string& t = v.Scalar();
  if (t == "true" || t == "True" || t == "TRUE") {
    s.bool_ref(cfg) = true;
    return "";
  }
  if (t == "false" || t == "False" || t == "FALSE") {
    s.bool_ref(cfg) = false;
    return "";
  }
  std::string lower = t;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  for (const char* word : {"yes", "no", "on", "off", "y", "n"})
    if (lower == word)
      return fmt::format("{} is a YAML 1.1 boolean, which glvq does not accept; expected {}", t,
                         exp);
  return fmt::format("'{}' is not a boolean; expected {}", shown(v), exp);
}

// Offset of the first byte of S that is not well-formed UTF-8 (RFC 3629: no overlong
// forms, surrogates or code points above U+10FFFF), or npos when S is valid.
size_t invalid_utf8_at(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const unsigned c = p[i];
    size_t n = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (s.size() - i <= n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k <= n; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += n + 1;
  }
  return std::string::npos;
}

std::string check_string_tag(const YAML::Node& v, const std::string& exp) {
  const std::string& tag = v.Tag();
  if (tag == "?" || tag == "!" || tag == kStrTag) return "";
  return fmt::format("unsupported tag '{}' on {}; expected {}", tag, shown(v), exp);
}

}  // namespace

const std::vector<KeySpec>& config_keys() {
  static const std::vector<KeySpec> keys = build_keys();
  return keys;
}

const KeySpec* find_key(const std::string& path) {
  for (const auto& k : config_keys())
    if (k.path == path) return &k;
  return nullptr;
}

bool is_section(const std::string& path) {
  const auto& s = all_sections();
  return std::find(s.begin(), s.end(), path) != s.end();
}

std::vector<std::string> section_children(const std::string& section) {
  std::vector<std::string> out;
  for (const auto& s : all_sections())
    if (!s.empty() && parent_of(s) == section) out.push_back(last_of(s));
  for (const auto& k : config_keys())
    if (parent_of(k.path) == section) out.push_back(last_of(k.path));
  return out;
}

std::string expected_text(const KeySpec& s) {
  switch (s.type) {
    case KeyType::Int:
      if (s.has_hi) return fmt::format("an integer in [{}, {}]", fmt_bound(s.lo), fmt_bound(s.hi));
      return fmt::format("an integer >= {}", fmt_bound(s.lo));
    case KeyType::Uint:
      return fmt::format("an integer in [0, {}]", std::numeric_limits<uint64_t>::max());
    case KeyType::Double:
      if (s.has_hi)
        return fmt::format("a number in {}{}, {}{}", s.lo_open ? "(" : "[", fmt_bound(s.lo),
                           fmt_bound(s.hi), s.hi_open ? ")" : "]");
      return fmt::format("a number {} {}", s.lo_open ? ">" : ">=", fmt_bound(s.lo));
    case KeyType::Bool:
      return "true or false";
    case KeyType::String:
      return s.required ? "a non-empty string" : "a string";
    case KeyType::Enum:
      return "one of: " + fmt::format("{}", fmt::join(s.choices, ", "));
  }
  return "";
}

std::string set_key(Config& cfg, const KeySpec& s, const YAML::Node& v) {
  const std::string exp = expected_text(s);
  if (!v.IsDefined() || v.IsNull()) return "no value; expected " + exp;
  if (v.IsMap()) return "got a map; expected " + exp;
  if (v.IsSequence()) return "got a list; expected " + exp;
  switch (s.type) {
    case KeyType::Int:
      return set_int(cfg, s, v, exp);
    case KeyType::Uint:
      return set_uint(cfg, s, v, exp);
    case KeyType::Double:
      return set_double(cfg, s, v, exp);
    case KeyType::Bool:
      return set_bool(cfg, s, v, exp);
    case KeyType::String: {
      std::string p = check_string_tag(v, exp);
      if (!p.empty()) return p;
      if (s.required && v.Scalar().empty()) return "empty string; expected " + exp;
      // report.json and the checkpoints record every value as JSON, which is UTF-8: refuse
      // here rather than fail at the end of a run.
      const size_t bad = invalid_utf8_at(v.Scalar());
      if (bad != std::string::npos)
        return fmt::format("byte {} (0x{:02X}) is not valid UTF-8; expected {} of UTF-8 text (rename the file or "
                           "directory)", bad, static_cast<unsigned char>(v.Scalar()[bad]), exp);
      s.string_ref(cfg) = v.Scalar();
      return "";
    }
    case KeyType::Enum: {
      std::string p = check_string_tag(v, exp);
      if (!p.empty()) return p;
      const std::string& t = v.Scalar();
      if (std::find(s.choices.begin(), s.choices.end(), t) != s.choices.end()) {
        s.string_ref(cfg) = t;
        return "";
      }
      std::string hint;
      size_t best = 3;  // suggest only a near miss (a typo or a case slip)
      for (const auto& c : s.choices) {
        std::string lower = t;
        std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
        size_t d = std::min(edit_distance(c, t), lower == c ? size_t{0} : best);
        if (d < best) best = d, hint = fmt::format(" (did you mean {}?)", c);
      }
      return fmt::format("'{}' is not allowed; expected {}{}", t, exp, hint);
    }
  }
  return "";
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string suggest_key(const std::string& path) {
  const std::vector<std::string> known = all_paths();
  // A typo of a real path: the closest within two edits.
  std::string best;
  size_t best_d = 3;
  for (const auto& k : known) {
    size_t d = edit_distance(k, path);
    if (d < best_d) best_d = d, best = k;
  }
  if (!best.empty()) return fmt::format(" (did you mean {}?)", best);
  // The right name in the wrong section: quant.dim -> quant.glvq.dim.
  const std::string name = last_of(path);
  std::vector<std::string> same_name;
  for (const auto& k : known)
    if (last_of(k) == name) same_name.push_back(k);
  if (!same_name.empty()) return fmt::format(" (did you mean {}?)", join_or(same_name));
  // Otherwise list what this section holds, when the section exists.
  std::string section = parent_of(path);
  while (!is_section(section)) section = parent_of(section);
  return fmt::format("; keys allowed {}: {}", section.empty() ? "at the top level" : "in " + section,
                     fmt::join(section_children(section), ", "));
}

nlohmann::json key_to_json(const Config& cfg, const KeySpec& s) {
  Config& c = const_cast<Config&>(cfg);  // the accessors only read here
  switch (s.type) {
    case KeyType::Int:
      return s.int_ref(c);
    case KeyType::Uint:
      return s.uint_ref(c);
    case KeyType::Double:
      return s.double_ref(c);
    case KeyType::Bool:
      return s.bool_ref(c);
    case KeyType::String:
    case KeyType::Enum:
      return s.string_ref(c);
  }
  return nullptr;
}

}  // namespace config_detail
}  // namespace glvq
