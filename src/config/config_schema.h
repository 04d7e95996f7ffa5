#pragma once
/// The table of config keys: type, allowed values and where each lives in
/// glvq::Config. config.cpp walks the YAML against it and config_to_json
/// prints from it, so a key added here is parsed, validated and reported at once
/// (docs/CONFIG.md must list it too: tests/base/test_config.cpp checks).
#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

namespace glvq {
namespace config_detail {

enum class KeyType { Int, Uint, Double, Bool, String, Enum };

/// One leaf key. Exactly one of the *_ref accessors is set, matching `type`
/// (String and Enum both use string_ref).
struct KeySpec {
  std::string path;  ///< dotted key path, e.g. "quant.glvq.dim"
  KeyType type = KeyType::String;
  double lo = 0, hi = 0;  ///< Int / Double bounds
  bool lo_open = false;   ///< lo itself is not allowed
  bool has_hi = false;
  bool hi_open = false;
  std::vector<std::string> choices;  ///< Enum values
  bool required = false;             ///< String: must be given, and not empty
  int& (*int_ref)(Config&) = nullptr;
  uint64_t& (*uint_ref)(Config&) = nullptr;
  double& (*double_ref)(Config&) = nullptr;
  bool& (*bool_ref)(Config&) = nullptr;
  std::string& (*string_ref)(Config&) = nullptr;
};

/// Every leaf key, in document order.
const std::vector<KeySpec>& config_keys();

/// The leaf key named PATH, or nullptr.
const KeySpec* find_key(const std::string& path);

/// True for the maps that hold keys: "" (the top level), "model", "quant.glvq", ...
bool is_section(const std::string& path);

/// Names (last component only) of the keys and sections directly inside SECTION.
std::vector<std::string> section_children(const std::string& section);

/// What SPEC accepts, for messages: "an integer in [16, 131072]", "true or false".
std::string expected_text(const KeySpec& spec);

/// Parses VALUE as SPEC's type, checks the range and stores it in CFG. Returns
/// "" on success, else the problem without location or key path, e.g.
/// "9 is out of range; expected a number in [1, 8]". CFG is untouched on failure.
std::string set_key(Config& cfg, const KeySpec& spec, const YAML::Node& value);

/// " (did you mean quant.glvq.dim?)" or "; keys allowed in quant: ..." for an unknown PATH.
std::string suggest_key(const std::string& path);

/// SPEC's current value in CFG as JSON.
nlohmann::json key_to_json(const Config& cfg, const KeySpec& spec);

/// Levenshtein distance (for suggestions).
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace config_detail
}  // namespace glvq
