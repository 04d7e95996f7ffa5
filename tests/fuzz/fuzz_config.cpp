// libFuzzer target: a YAML experiment config, then --set overrides. The input is the
// YAML text; if it holds NUL bytes, each NUL-separated piece after the first is one
// override. Either glvq::UsageError is thrown, or the config serialises to JSON
// (what report.json and checkpoints record) and parses back to the same config.
#include "common/error.h"
#include "config/config.h"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  for (size_t b = 0;;) {
    const size_t e = in.find('\0', b);
    parts.push_back(in.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
  glvq::Config cfg;
  try {
    cfg = glvq::parse_config(parts[0], "fuzz.yaml", overrides);
  } catch (const glvq::UsageError&) {
    return 0;  // the loader's one way to refuse
  }
  // JSON is YAML: the recorded config must load back to itself.
  const std::string dumped = glvq::config_to_json(cfg).dump();
  const glvq::Config again = glvq::parse_config(dumped, "fuzz.json");
  if (glvq::config_to_json(again) != glvq::config_to_json(cfg)) std::abort();
  return 0;
}
