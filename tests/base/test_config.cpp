// Strict YAML config loader: values, defaults, every error kind (with the
// exact line and key path), overrides, JSON views and the shipped configs.
// Runs with the working directory at the repository root (ctest sets it).
#include "common/error.h"
#include "config/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

namespace glvq {
namespace {

/// Joins LINES with '\n', so that element i is on line i + 1 of the text.
std::string yaml(std::initializer_list<const char*> lines) {
  std::string out;
  for (const char* l : lines) out += std::string(l) + "\n";
  return out;
}

/// The smallest valid config; tests append lines after line 5.
const char* const kMinimal[] = {"model:", "  path: models/m", "data:", "  eval: data/e.txt",
                                "output_dir: runs/x"};

std::string minimal_plus(std::initializer_list<const char*> more) {
  std::string out;
  for (const char* l : kMinimal) out += std::string(l) + "\n";
  for (const char* l : more) out += std::string(l) + "\n";
  return out;
}

/// The UsageError message parse_config raises, or "" (and a test failure) when none.
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(text, "t.yaml", overrides);
  } catch (const UsageError& e) {
    EXPECT_EQ(e.exit_code(), kExitUsage);
    return e.message();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected glvq::UsageError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected a UsageError for:\n" << text;
  return "";
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

#define EXPECT_STARTS_WITH(s, prefix) \
  EXPECT_TRUE(starts_with((s), (prefix))) << "message: " << (s) << "\nexpected prefix: " << (prefix)
#define EXPECT_CONTAINS(s, part) \
  EXPECT_NE((s).find(part), std::string::npos) << "message: " << (s) << "\nexpected to contain: " << (part)

/// Dotted paths of every leaf of a JSON object tree.
void flatten(const nlohmann::json& j, const std::string& prefix, std::vector<std::string>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object())
      flatten(*it, path, out);
    else
      out.push_back(path);
  }
}

// ---------------------------------------------------------------- parsing

TEST(ConfigParse, ValidFileValuesAndDefaults) {
  const std::string text = yaml({
      "# a comment line",                  // 1
      "model:",                            // 2
      "  path: models/m",                  // 3
      "data:",                             // 4
      "  calib: data/c.txt",               // 5
      "  eval: data/e.txt",                // 6
      "calib:",                            // 7
      "  ctx: 2048",                       // 8
      "  samples: 64",                     // 9
      "  seed: 18446744073709551615",      // 10
      "  propagate: fp",                   // 11
      "eval:",                             // 12
      "  max_chunks: 10",                  // 13
      "quant:",                            // 14
      "  method: gptq",                    // 15
      "  bits: 3",                         // 16
      "  gptq: {damp: 0.05, act_order: false}",  // 17
      "  glvq:",                           // 18
      "    lr: 2.5e-4",                    // 19
      "    companding: False",             // 20
      "    group_size: 0",                 // 21
      "device: cpu",                       // 22
      "output_dir: runs/x",                // 23
      "threads: 8",                        // 24
  });
  const Config c = parse_config(text, "t.yaml");
  EXPECT_EQ(c.model.path, "models/m");
  EXPECT_EQ(c.data.calib, "data/c.txt");
  EXPECT_EQ(c.data.eval, "data/e.txt");
  EXPECT_EQ(c.calib.ctx, 2048);
  EXPECT_EQ(c.calib.samples, 64);
  EXPECT_EQ(c.calib.seed, UINT64_MAX);
  EXPECT_EQ(c.calib.propagate, "fp");
  EXPECT_EQ(c.eval.max_chunks, 10);
  EXPECT_EQ(c.quant.method, "gptq");
  EXPECT_DOUBLE_EQ(c.quant.bits, 3.0);
  EXPECT_DOUBLE_EQ(c.quant.gptq.damp, 0.05);
  EXPECT_FALSE(c.quant.gptq.act_order);
  EXPECT_DOUBLE_EQ(c.quant.glvq.lr, 2.5e-4);
  EXPECT_FALSE(c.quant.glvq.companding);
  EXPECT_EQ(c.quant.glvq.group_size, 0);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_EQ(c.output_dir, "runs/x");
  EXPECT_EQ(c.threads, 8);
  EXPECT_EQ(c.source_file, "t.yaml");
  // Keys the file leaves out keep the struct defaults.
  const Config d;
  EXPECT_EQ(c.calib.micro_batch, d.calib.micro_batch);
  EXPECT_EQ(c.eval.ctx, d.eval.ctx);
  EXPECT_EQ(c.eval.micro_batch, d.eval.micro_batch);
  EXPECT_EQ(c.quant.gptq.group_size, d.quant.gptq.group_size);
  EXPECT_EQ(c.quant.gptq.static_groups, d.quant.gptq.static_groups);
  EXPECT_EQ(c.quant.glvq.dim, d.quant.glvq.dim);
  EXPECT_EQ(c.quant.glvq.rounding, d.quant.glvq.rounding);
  EXPECT_EQ(c.quant.rtn.group_size, d.quant.rtn.group_size);
  EXPECT_EQ(c.seed, d.seed);
}

TEST(ConfigParse, MinimalFileGetsAllDefaults) {
  const Config c = parse_config(minimal_plus({}), "t.yaml");
  Config expect;
  expect.model.path = "models/m";
  expect.data.eval = "data/e.txt";
  expect.output_dir = "runs/x";
  EXPECT_EQ(config_to_json(c), config_to_json(expect));
  EXPECT_EQ(c.quant.method, "none");  // so data.calib is not needed
}

TEST(ConfigParse, NumberAndBooleanSpellings) {
  const Config c = parse_config(minimal_plus({
                                    "quant:",
                                    "  bits: 2",          // an integer is a fine double
                                    "  glvq:",
                                    "    lr: +1e-3",
                                    "    lambda: 0",
                                    "    eps: .5",
                                    "    bit_alloc: FALSE",
                                    "    incoherence: !!bool true",
                                    "threads: +4",
                                    "seed: 007",
                                }),
                                "t.yaml");
  EXPECT_DOUBLE_EQ(c.quant.bits, 2.0);
  EXPECT_DOUBLE_EQ(c.quant.glvq.lr, 1e-3);
  EXPECT_DOUBLE_EQ(c.quant.glvq.lambda, 0.0);
  EXPECT_DOUBLE_EQ(c.quant.glvq.eps, 0.5);
  EXPECT_FALSE(c.quant.glvq.bit_alloc);
  EXPECT_TRUE(c.quant.glvq.incoherence);
  EXPECT_EQ(c.threads, 4);
  EXPECT_EQ(c.seed, 7u);
}

TEST(ConfigParse, EmptySectionKeepsDefaults) {
  const Config c = parse_config(minimal_plus({"quant:", "  glvq:", "    # all commented out"}), "t.yaml");
  EXPECT_EQ(c.quant.glvq.dim, 8);
}

TEST(ConfigParse, GridGroupSizeZeroMeansWholeRows) {
  // docs/CONFIG.md: group_size 0 = one group per row, for gptq and rtn as for glvq.
  const Config c = parse_config(minimal_plus({"quant:", "  gptq: {group_size: 0}", "  rtn: {group_size: 0}"}), "t.yaml");
  EXPECT_EQ(c.quant.gptq.group_size, 0);
  EXPECT_EQ(c.quant.rtn.group_size, 0);
}

TEST(ConfigParse, QuotedAndNumericStrings) {
  const Config c = parse_config(
      yaml({"model: {path: \"models/with space\"}", "data: {eval: '123'}", "output_dir: 2024"}),
      "t.yaml");
  EXPECT_EQ(c.model.path, "models/with space");
  EXPECT_EQ(c.data.eval, "123");
  EXPECT_EQ(c.output_dir, "2024");
}

// ---------------------------------------------------------------- errors

TEST(ConfigErrors, OutOfRangeNamesFileLineAndKey) {
  const std::string msg = error_of(minimal_plus({"quant:", "  bits: 9"}));
  EXPECT_EQ(msg, "t.yaml:7: quant.bits: 9 is out of range; expected a number in [1, 8]");
}

TEST(ConfigErrors, OutOfRangeEveryKind) {
  EXPECT_STARTS_WITH(error_of(minimal_plus({"calib:", "  ctx: 8"})),
                     "t.yaml:7: calib.ctx: 8 is out of range; expected an integer in [16, 131072]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"calib: {samples: 0}"})),
                     "t.yaml:6: calib.samples: 0 is out of range; expected an integer in [1, 100000]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"eval:", "  max_chunks: -1"})),
                     "t.yaml:7: eval.max_chunks: -1 is out of range; expected an integer >= 0");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"eval:", "  max_chunks: 2147483648"})),
                     "t.yaml:7: eval.max_chunks: 2147483648 is out of range; expected an integer "
                     "in [0, 2147483647]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"eval:", "  micro_batch: 1025"})),
                     "t.yaml:7: eval.micro_batch: 1025 is out of range");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"calib:", "  ctx: 99999999999999999999"})),
                     "t.yaml:7: calib.ctx: 99999999999999999999 is out of range");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"seed: -1"})),
                     "t.yaml:6: seed: -1 is out of range; expected an integer in [0, "
                     "18446744073709551615]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"calib: {seed: 18446744073709551616}"})),
                     "t.yaml:6: calib.seed: 18446744073709551616 is out of range");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"threads: -2"})),
                     "t.yaml:6: threads: -2 is out of range; expected an integer >= 0");
  EXPECT_STARTS_WITH(
      error_of(minimal_plus({"quant:", "  gptq:", "    damp: 1"})),
      "t.yaml:8: quant.gptq.damp: 1 is out of range; expected a number in (0, 1)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  gptq:", "    damp: 0"})),
                     "t.yaml:8: quant.gptq.damp: 0 is out of range");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    lr: 0"})),
                     "t.yaml:8: quant.glvq.lr: 0 is out of range; expected a number > 0");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    lambda: -1e-9"})),
                     "t.yaml:8: quant.glvq.lambda: -1e-9 is out of range; expected a number >= 0");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    dim: 65"})),
                     "t.yaml:8: quant.glvq.dim: 65 is out of range; expected an integer in [2, 64]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    iters: 100001"})),
                     "t.yaml:8: quant.glvq.iters: 100001 is out of range");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  rtn:", "    group_size: -1"})),
                     "t.yaml:8: quant.rtn.group_size: -1 is out of range; expected an integer >= 0");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  finetune:", "    heldout: 1"})),
                     "t.yaml:8: quant.finetune.heldout: 1 is out of range; expected a number in (0, 1)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  finetune:", "    steps: 0"})),
                     "t.yaml:8: quant.finetune.steps: 0 is out of range; expected an integer in [1, 1000000]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  bits: 1e999"})),
                     "t.yaml:7: quant.bits: 1e999 is out of range");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  bits: .inf"})),
                     "t.yaml:7: quant.bits: .inf is not a finite number");
}

TEST(ConfigErrors, UnknownTopLevelKeySuggests) {
  EXPECT_EQ(error_of(minimal_plus({"thread: 4"})),
            "t.yaml:6: unknown key thread (did you mean threads?)");
}

TEST(ConfigErrors, UnknownNestedKeySuggests) {
  EXPECT_EQ(error_of(minimal_plus({"quant:", "  glvq:", "    dimm: 4"})),
            "t.yaml:8: unknown key quant.glvq.dimm (did you mean quant.glvq.dim?)");
}

TEST(ConfigErrors, KeyInWrongSectionSuggestsItsHome) {
  EXPECT_EQ(error_of(minimal_plus({"quant:", "  method: glvq", "  dim: 4"})),
            "t.yaml:8: unknown key quant.dim (did you mean quant.glvq.dim?)");
  EXPECT_EQ(error_of(minimal_plus({"group_size: 64"})),
            "t.yaml:6: unknown key group_size (did you mean quant.glvq.group_size, "
            "quant.gptq.group_size or quant.rtn.group_size?)");
}

TEST(ConfigErrors, UnknownKeyWithoutNearMissListsTheSection) {
  EXPECT_EQ(error_of(minimal_plus({"quant:", "  glvq:", "    zzzzzz: 1"})),
            "t.yaml:8: unknown key quant.glvq.zzzzzz; keys allowed in quant.glvq: dim, group_size, "
            "iters, lr, lambda, sigma_min, sigma_max, eps, companding, rounding, bit_alloc, "
            "error_feedback, incoherence, code, lloyd_iters, candidates");
  EXPECT_EQ(error_of(minimal_plus({"banana: 1"})),
            "t.yaml:6: unknown key banana; keys allowed at the top level: model, data, calib, "
            "eval, quant, device, transport, comm_timeout_s, preempt_grace_s, output_dir, threads, seed");
}

TEST(ConfigErrors, WrongTypes) {
  EXPECT_STARTS_WITH(error_of(minimal_plus({"calib:", "  ctx: abc"})),
                     "t.yaml:7: calib.ctx: 'abc' is not a number; expected an integer in [16, "
                     "131072]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"calib:", "  ctx: \"1024\""})),
                     "t.yaml:7: calib.ctx: \"1024\" is a quoted string; expected an integer");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    dim: 2.5"})),
                     "t.yaml:8: quant.glvq.dim: 2.5 is not an integer; expected an integer in [2, 64]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  bits: {a: 1}"})),
                     "t.yaml:7: quant.bits: got a map; expected a number in [1, 8]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  bits:", "    - 2"})),
                     "t.yaml:7: quant.bits: got a list; expected a number");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  bits:"})),
                     "t.yaml:7: quant.bits: no value; expected a number in [1, 8]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  bits: two"})),
                     "t.yaml:7: quant.bits: 'two' is not a number");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"seed: 1.5"})),
                     "t.yaml:6: seed: 1.5 is not an integer");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"threads: !!str 4"})),
                     "t.yaml:6: threads: 4 is a quoted string");
  EXPECT_STARTS_WITH(error_of(yaml({"model: [a, b]", "data: {eval: e}", "output_dir: o"})),
                     "t.yaml:1: model: got a list; expected a map of keys (path)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant: glvq"})),
                     "t.yaml:6: quant: got a scalar 'glvq'; expected a map of keys (glvq, gptq, "
                     "rtn, finetune, method, bits, sequential)");
  EXPECT_STARTS_WITH(error_of(yaml({"model:", "  path: [a]", "data: {eval: e}", "output_dir: o"})),
                     "t.yaml:2: model.path: got a list; expected a non-empty string");
  EXPECT_STARTS_WITH(error_of(yaml({"model: {path: m}", "data: {eval: e}", "output_dir: \"\""})),
                     "t.yaml:3: output_dir: empty string; expected a non-empty string");
}

TEST(ConfigErrors, StringsMustBeUtf8) {
  // A Latin-1 path: report.json and the checkpoints record values as JSON, which cannot hold it.
  EXPECT_EQ(error_of(yaml({"model: {path: \"mod\xE9le\"}", "data: {eval: e}", "output_dir: o"})),
            "t.yaml:1: model.path: byte 3 (0xE9) is not valid UTF-8; expected a non-empty string of UTF-8 "
            "text (rename the file or directory)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"output_dir=runs/\xC0\xAF"}),  // overlong '/'
                     "--set output_dir=runs/\xC0\xAF: output_dir: byte 5 (0xC0) is not valid UTF-8");
  EXPECT_STARTS_WITH(error_of(yaml({"model: {path: m}", "data: {eval: e, calib: \"c\xED\xA0\x80\"}",  // a surrogate
                                    "output_dir: o"})),
                     "t.yaml:2: data.calib: byte 1 (0xED) is not valid UTF-8");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"data.eval=e\xE6\x97"}),  // cut inside a character
                     "--set data.eval=e\xE6\x97: data.eval: byte 1 (0xE6) is not valid UTF-8");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"data.eval=\xF4\x90\x80\x80"}),  // above U+10FFFF
                     "--set data.eval=\xF4\x90\x80\x80: data.eval: byte 0 (0xF4) is not valid UTF-8");
  // UTF-8 beyond ASCII is kept as is and serialises.
  const Config c = parse_config(yaml({"model: {path: \"mod\xC3\xA8le/\xE6\x97\xA5\xF0\x9F\x98\x80\"}",
                                      "data: {eval: e}", "output_dir: o"}),
                                "t.yaml");
  EXPECT_EQ(c.model.path, "mod\xC3\xA8le/\xE6\x97\xA5\xF0\x9F\x98\x80");
  EXPECT_NE(config_to_json(c).dump().find(c.model.path), std::string::npos);
}

TEST(ConfigErrors, BooleansAreTrueOrFalseOnly) {
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    companding: yes"})),
                     "t.yaml:8: quant.glvq.companding: yes is a YAML 1.1 boolean, which glvq does "
                     "not accept; expected true or false");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  gptq: {act_order: 1}"})),
                     "t.yaml:7: quant.gptq.act_order: '1' is not a boolean; expected true or false");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  gptq: {act_order: \"true\"}"})),
                     "t.yaml:7: quant.gptq.act_order: \"true\" is a quoted string");
}

TEST(ConfigErrors, EnumValues) {
  EXPECT_EQ(error_of(minimal_plus({"quant:", "  method: glvqq"})),
            "t.yaml:7: quant.method: 'glvqq' is not allowed; expected one of: none, rtn, gptq, "
            "glvq (did you mean glvq?)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"device: CUDA"})),
                     "t.yaml:6: device: 'CUDA' is not allowed; expected one of: auto, cpu, cuda "
                     "(did you mean cuda?)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"calib:", "  propagate: float"})),
                     "t.yaml:7: calib.propagate: 'float' is not allowed; expected one of: fp, "
                     "quantized");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant: {glvq: {rounding: lll}}"})),
                     "t.yaml:6: quant.glvq.rounding: 'lll' is not allowed");
}

TEST(ConfigErrors, MissingRequiredKeys) {
  // No model section: the error points at the top of the map (first key, line 2).
  EXPECT_STARTS_WITH(error_of(yaml({"# header", "data:", "  eval: e", "output_dir: o"})),
                     "t.yaml:2: model.path: missing required key; expected a non-empty string");
  // The section exists but lacks the key: the error points at the section.
  EXPECT_STARTS_WITH(error_of(yaml({"data:", "  eval: e", "model: {}", "output_dir: o"})),
                     "t.yaml:3: model.path: missing required key");
  EXPECT_STARTS_WITH(error_of(yaml({"model: {path: m}", "data:", "  calib: c", "output_dir: o"})),
                     "t.yaml:2: data.eval: missing required key");
  EXPECT_STARTS_WITH(error_of(yaml({"model: {path: m}", "data:", "  eval: e"})),
                     "t.yaml:1: output_dir: missing required key");
}

TEST(ConfigErrors, CalibDataRequiredWhenQuantizing) {
  const std::string msg = error_of(minimal_plus({"quant:", "  method: glvq"}));
  EXPECT_EQ(msg,
            "t.yaml:3: data.calib: missing required key; quant.method is glvq (on line 7), which "
            "needs calibration text (set data.calib, or quant.method: none)");
}

TEST(ConfigErrors, DuplicateKeys) {
  EXPECT_EQ(error_of(yaml({"model:", "  path: a", "  path: b", "data: {eval: e}", "output_dir: o"})),
            "t.yaml:3: model.path: duplicate key (first given on line 2); give each key once");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant: {bits: 2}", "quant: {bits: 3}"})),
                     "t.yaml:7: quant: duplicate key (first given on line 6)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant: {bits: 2, bits: 3}"})),
                     "t.yaml:6: quant.bits: duplicate key");
}

TEST(ConfigErrors, MalformedYaml) {
  EXPECT_STARTS_WITH(error_of(yaml({"model:", "  path: [a, b", "data:", "  eval: e"})),
                     "t.yaml:3: malformed YAML");
  EXPECT_STARTS_WITH(error_of(yaml({"model:", "\tpath: a"})), "t.yaml:2: malformed YAML");
  EXPECT_STARTS_WITH(error_of(yaml({"model:", "  path: a", " data: b"})),
                     "t.yaml:3: malformed YAML");
  // yaml-cpp's LoadAll never returns on these (found by tests/fuzz/fuzz_config).
  EXPECT_EQ(error_of(","), "t.yaml:1: malformed YAML (column 1): unexpected ','");
  EXPECT_EQ(error_of(yaml({"# comment", "  , model: {path: m}"})),
            "t.yaml:2: malformed YAML (column 3): unexpected ','");
  EXPECT_STARTS_WITH(error_of(yaml({"model: {path: m}", "---", ","})),
                     "t.yaml:3: a second YAML document starts here");
}

TEST(ConfigErrors, EmptyOrNotAMap) {
  EXPECT_STARTS_WITH(error_of(""), "t.yaml:1: the config is empty");
  EXPECT_STARTS_WITH(error_of(yaml({"# only", "# comments"})), "t.yaml:1: the config is empty");
  EXPECT_STARTS_WITH(error_of(yaml({"- model", "- data"})),
                     "t.yaml:1: the top level must be a map of keys");
  EXPECT_STARTS_WITH(error_of(yaml({"", "just a string"})),
                     "t.yaml:2: the top level must be a map of keys");
  EXPECT_STARTS_WITH(error_of(yaml({"model: {path: m}", "---", "output_dir: o"})),
                     "t.yaml:3: a second YAML document starts here");
}

TEST(ConfigErrors, OddKeys) {
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant.bits: 2"})),
                     "t.yaml:6: quant.bits: key names cannot contain '.'");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant: {\"\": 1}"})),
                     "t.yaml:6: quant: keys must be plain names; got an empty key");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"[a, b]: 1"})),
                     "t.yaml:6: top level: keys must be plain names; got a list as a key");
}

TEST(ConfigErrors, GroupSizeMustBeAMultipleOfDim) {
  // The key set last is the one blamed.
  EXPECT_EQ(error_of(minimal_plus({"quant:", "  glvq:", "    dim: 8", "    group_size: 100"})),
            "t.yaml:9: quant.glvq.group_size: 100 is not a multiple of quant.glvq.dim (8); "
            "expected 0 (whole row) or a multiple of 8");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    group_size: 100", "    dim: 8"})),
                     "t.yaml:9: quant.glvq.dim: 8 does not divide quant.glvq.group_size (100)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    dim: 3"})),
                     "t.yaml:8: quant.glvq.dim: 3 does not divide quant.glvq.group_size (128)");
  // Whole rows (group_size 0) go with any dimension.
  EXPECT_NO_THROW(parse_config(minimal_plus({"quant: {glvq: {dim: 3, group_size: 0}}"}), "t.yaml"));
}

TEST(ConfigErrors, SigmaMaxMustExceedSigmaMin) {
  EXPECT_EQ(error_of(minimal_plus({"quant:", "  glvq:", "    sigma_min: 5", "    sigma_max: 5"})),
            "t.yaml:9: quant.glvq.sigma_max: 5 is not above quant.glvq.sigma_min (5); expected "
            "sigma_max > sigma_min");
  EXPECT_STARTS_WITH(error_of(minimal_plus({"quant:", "  glvq:", "    sigma_min: 1e5"})),
                     "t.yaml:8: quant.glvq.sigma_min: 100000 is not below quant.glvq.sigma_max "
                     "(10000)");
}

TEST(ConfigErrors, ShapedCodeNeedsDimMultipleOf8AndNoCompanding) {
  const char* glvq = "quant: {method: glvq, glvq: {code: shaped, dim: 4, group_size: 64}}";
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"data.calib=c.txt", "quant.method=glvq",
                              "quant.glvq.code=shaped", "quant.glvq.dim=4"}),
                     "--set quant.glvq.dim=4: quant.glvq.dim: 4 is not a multiple of 8, which "
                     "quant.glvq.code: shaped needs");
  EXPECT_STARTS_WITH(error_of(yaml({"model: {path: m}", "data: {eval: e.txt, calib: c.txt}", "output_dir: o", glvq})),
                     "t.yaml:4: quant.glvq.dim: 4 is not a multiple of 8");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"data.calib=c.txt", "quant.method=glvq",
                              "quant.glvq.code=shaped", "quant.glvq.companding=true"}),
                     "--set quant.glvq.companding=true: quant.glvq.companding: true does not apply to "
                     "quant.glvq.code: shaped");
  // The box code takes both; RTN does not look at quant.glvq.code at all.
  EXPECT_NO_THROW(parse_config(minimal_plus({}), "t.yaml", {"quant.glvq.code=box", "quant.glvq.dim=4",
                                                          "quant.glvq.companding=true"}));
}

TEST(ConfigErrors, UnquantizedTuningNeedsBlockFinetuning) {
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"data.calib=c.txt", "quant.finetune.unquantized=true"}),
                     "--set quant.finetune.unquantized=true: quant.finetune.unquantized: true tunes the "
                     "not-yet-quantized linears as part of block fine-tuning; expected quant.finetune.block: true");
  // blamed on the later of the two keys
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"data.calib=c.txt", "quant.finetune.unquantized=true",
                                                 "quant.finetune.block=false"}),
                     "--set quant.finetune.block=false: quant.finetune.unquantized: true");
  EXPECT_NO_THROW(parse_config(minimal_plus({}), "t.yaml",
                               {"data.calib=c.txt", "quant.finetune.block=true", "quant.finetune.unquantized=true",
                                "quant.sequential=false"}));
}

TEST(ConfigErrors, SequentialAndUnquantizedTuningExcludeEachOther) {
  const std::vector<std::string> glvq = {"data.calib=c.txt", "quant.method=glvq", "quant.finetune.block=true"};
  auto with = [&](std::vector<std::string> v, const std::vector<std::string>& more) {
    v.insert(v.end(), more.begin(), more.end());
    return v;
  };
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), with(glvq, {"quant.finetune.unquantized=true", "quant.sequential=true"})),
                     "--set quant.sequential=true: quant.sequential and quant.finetune.unquantized both change");
  // sequential is on by default: the error then names the key that was set
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), with(glvq, {"quant.finetune.unquantized=true"})),
                     "--set quant.finetune.unquantized=true: quant.sequential and quant.finetune.unquantized");
  EXPECT_NO_THROW(parse_config(minimal_plus({}), "t.yaml", with(glvq, {"quant.finetune.unquantized=true",
                                                                       "quant.sequential=false"})));
  // RTN ignores sequential, so the two do not clash there
  EXPECT_NO_THROW(parse_config(minimal_plus({}), "t.yaml", {"data.calib=c.txt", "quant.method=rtn",
                                                            "quant.finetune.block=true",
                                                            "quant.finetune.unquantized=true"}));
}

TEST(ConfigErrors, LoadConfigNamesTheFile) {
  const std::string path = ::testing::TempDir() + "glvq_test_config_bad.yaml";
  {
    std::ofstream f(path);
    f << minimal_plus({"quant:", "  bits: 0.5"});
  }
  try {
    load_config(path);
    ADD_FAILURE() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_STARTS_WITH(e.message(), path + ":7: quant.bits: 0.5 is out of range");
  }
  std::remove(path.c_str());

  try {
    load_config("no/such/config.yaml");
    ADD_FAILURE() << "expected a UsageError";
  } catch (const UsageError& e) {
    EXPECT_STARTS_WITH(e.message(), "no/such/config.yaml: cannot open the config file");
  }
}

// ---------------------------------------------------------------- overrides

TEST(ConfigOverrides, ApplyInOrderAndSetOmittedKeys) {
  const Config c = parse_config(
      yaml({"model: {path: m}", "data: {eval: e}"}), "t.yaml",
      {"quant.bits=3", "quant.bits=4", "output_dir=runs/other dir", "quant.method=glvq",
       "data.calib=data/c.txt", "quant.glvq.incoherence=true", "calib.seed=42",
       " device = cpu"});
  EXPECT_DOUBLE_EQ(c.quant.bits, 4.0);
  EXPECT_EQ(c.output_dir, "runs/other dir");
  EXPECT_EQ(c.quant.method, "glvq");
  EXPECT_EQ(c.data.calib, "data/c.txt");
  EXPECT_TRUE(c.quant.glvq.incoherence);
  EXPECT_EQ(c.calib.seed, 42u);
  EXPECT_EQ(c.device, "cpu");
}

TEST(ConfigOverrides, OverrideBeatsFile) {
  const Config c = parse_config(minimal_plus({"quant: {bits: 2}"}), "t.yaml", {"quant.bits=2.5"});
  EXPECT_DOUBLE_EQ(c.quant.bits, 2.5);
}

TEST(ConfigOverrides, FlowMapOnASection) {
  const Config c =
      parse_config(minimal_plus({}), "t.yaml", {"quant.glvq={dim: 4, group_size: 64}"});
  EXPECT_EQ(c.quant.glvq.dim, 4);
  EXPECT_EQ(c.quant.glvq.group_size, 64);
  EXPECT_EQ(error_of(minimal_plus({}), {"quant.glvq={dimm: 4}"}),
            "--set quant.glvq={dimm: 4}: unknown key quant.glvq.dimm (did you mean "
            "quant.glvq.dim?)");
}

TEST(ConfigOverrides, UnknownKeyNamesTheOverride) {
  EXPECT_EQ(error_of(minimal_plus({}), {"quant.bitz=2"}),
            "--set quant.bitz=2: unknown key quant.bitz (did you mean quant.bits?)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant.glvq.dimension=4"}),
                     "--set quant.glvq.dimension=4: unknown key quant.glvq.dimension");
}

TEST(ConfigOverrides, ValuesAreValidated) {
  EXPECT_EQ(error_of(minimal_plus({}), {"quant.bits=9"}),
            "--set quant.bits=9: quant.bits: 9 is out of range; expected a number in [1, 8]");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"calib.ctx=2.5"}),
                     "--set calib.ctx=2.5: calib.ctx: 2.5 is not an integer");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant.bits=[1, 2]"}),
                     "--set quant.bits=[1, 2]: quant.bits: got a list");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant.bits="}),
                     "--set quant.bits=: quant.bits: no value");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"calib.ctx=\"2048\""}),
                     "--set calib.ctx=\"2048\": calib.ctx: \"2048\" is a quoted string");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant.gptq.act_order=on"}),
                     "--set quant.gptq.act_order=on: quant.gptq.act_order: on is a YAML 1.1 boolean");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant.bits=[1,"}),
                     "--set quant.bits=[1,: quant.bits: malformed value");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant.glvq="}),
                     "--set quant.glvq=: quant.glvq: no value; expected a map of keys (dim, ");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant=glvq"}),
                     "--set quant=glvq: quant: got a scalar 'glvq'; expected a map of keys");
}

TEST(ConfigOverrides, MalformedOverride) {
  EXPECT_EQ(error_of(minimal_plus({}), {"quant.bits"}),
            "--set quant.bits: expected key.path=value (e.g. --set quant.bits=2)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"=2"}), "--set =2: no key before '='");
}

TEST(ConfigOverrides, CrossKeyRulesSeeOverrides) {
  // The override fixes what the file lacks ...
  EXPECT_NO_THROW(parse_config(minimal_plus({"quant: {method: glvq}"}), "t.yaml",
                               {"data.calib=data/c.txt"}));
  // ... or causes the conflict, and is then the one named.
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant.glvq.dim=3"}),
                     "--set quant.glvq.dim=3: quant.glvq.dim: 3 does not divide "
                     "quant.glvq.group_size (128)");
  EXPECT_STARTS_WITH(error_of(minimal_plus({}), {"quant.method=rtn"}),
                     "t.yaml:3: data.calib: missing required key; quant.method is rtn (by --set "
                     "quant.method=rtn)");
  EXPECT_NO_THROW(parse_config(minimal_plus({}), "t.yaml", {"quant.glvq.dim=3", "quant.glvq.group_size=0"}));
}

// ---------------------------------------------------------------- JSON

const char* const kFull[] = {
    "model: {path: models/m}",
    "data: {calib: data/c.txt, eval: data/e.txt}",
    "calib: {ctx: 512, samples: 7, seed: 18446744073709551615, micro_batch: 2, propagate: fp,",
    "        keep_stats: true}",
    "eval: {ctx: 256, max_chunks: 3, micro_batch: 5}",
    "quant:",
    "  method: glvq",
    "  bits: 2.25",
    "  glvq: {dim: 4, group_size: 64, iters: 7, lr: 1.0e-3, lambda: 0.3, sigma_min: 1.0e-6,",
    "         sigma_max: 123.456, eps: 0, companding: false, rounding: nearest_plane,",
    "         bit_alloc: false, error_feedback: true, incoherence: true, code: box, lloyd_iters: 3,",
    "         candidates: 9}",
    "  gptq: {damp: 0.1, act_order: false, group_size: 32, static_groups: false}",
    "  rtn: {group_size: 16}",
    "device: cuda",
    "transport: mpi",
    "comm_timeout_s: 60",
    "preempt_grace_s: 7",
    "output_dir: runs/full",
    "threads: 3",
    "seed: 99",
};

std::string full_text() {
  std::string out;
  for (const char* l : kFull) out += std::string(l) + "\n";
  return out;
}

TEST(ConfigJson, EveryKeyWithItsValue) {
  const nlohmann::json j = config_to_json(parse_config(full_text(), "t.yaml"));
  std::vector<std::string> keys;
  flatten(j, "", keys);
  EXPECT_EQ(keys.size(), 55u);
  EXPECT_EQ(j["calib"]["activation_dtype"], "float32");  // not in the file: the default
  EXPECT_EQ(j["quant"]["finetune"]["e2e"], false);  // not in the file: the defaults
  EXPECT_EQ(j["quant"]["finetune"]["e2e_steps"], 200);
  EXPECT_EQ(j["model"]["path"], "models/m");
  EXPECT_EQ(j["data"]["calib"], "data/c.txt");
  EXPECT_EQ(j["calib"]["seed"].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ(j["calib"]["propagate"], "fp");
  EXPECT_EQ(j["calib"]["keep_stats"], true);
  EXPECT_EQ(j["eval"]["micro_batch"], 5);
  EXPECT_EQ(j["quant"]["bits"], 2.25);
  EXPECT_EQ(j["quant"]["glvq"]["rounding"], "nearest_plane");
  EXPECT_EQ(j["quant"]["glvq"]["sigma_max"], 123.456);
  EXPECT_EQ(j["quant"]["glvq"]["incoherence"], true);
  EXPECT_EQ(j["quant"]["glvq"]["code"], "box");
  EXPECT_EQ(j["quant"]["glvq"]["lloyd_iters"], 3);
  EXPECT_EQ(j["quant"]["glvq"]["candidates"], 9);
  EXPECT_EQ(j["quant"]["gptq"]["group_size"], 32);
  EXPECT_EQ(j["quant"]["rtn"]["group_size"], 16);
  EXPECT_EQ(j["device"], "cuda");
  EXPECT_EQ(j["transport"], "mpi");
  EXPECT_EQ(j["comm_timeout_s"], 60);
  EXPECT_EQ(j["preempt_grace_s"], 7);
  EXPECT_EQ(j["threads"], 3);
  EXPECT_EQ(j["seed"], 99);
  EXPECT_FALSE(j.contains("source_file"));  // not a key
}

TEST(ConfigJson, RoundTripThroughTheParser) {
  // JSON is YAML: the JSON view parses back to the same configuration.
  const nlohmann::json j = config_to_json(parse_config(full_text(), "t.yaml"));
  const nlohmann::json again = config_to_json(parse_config(j.dump(2), "json"));
  EXPECT_EQ(j, again);
  const nlohmann::json d = config_to_json(parse_config(minimal_plus({}), "t.yaml"));
  EXPECT_EQ(d, config_to_json(parse_config(d.dump(), "json")));
}

TEST(ConfigJson, QuantSubsetHasOnlyWhatChangesTheResult) {
  const Config c = parse_config(full_text(), "t.yaml");
  const nlohmann::json q = quant_config_to_json(c);
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q["quant"]["method"], "glvq");
  EXPECT_EQ(q["quant"]["bits"], 2.25);
  EXPECT_EQ(q["quant"]["glvq"], config_to_json(c)["quant"]["glvq"]);
  EXPECT_FALSE(q["quant"].contains("gptq"));
  EXPECT_FALSE(q["quant"].contains("rtn"));
  EXPECT_EQ(q["calib"], (nlohmann::json{{"ctx", 512},
                                        {"samples", 7},
                                        {"seed", UINT64_MAX},
                                        {"propagate", "fp"}}));
  EXPECT_EQ(q["seed"], 99);

  // Keys outside the subset leave it unchanged; keys inside change it.
  const std::string text = full_text();
  auto with = [&](const std::string& o) { return quant_config_to_json(parse_config(text, "t", {o})); };
  for (const char* same : {"eval.ctx=1024", "calib.micro_batch=8", "device=cpu", "threads=1",
                           "output_dir=elsewhere", "model.path=other", "data.calib=x",
                           "quant.gptq.damp=0.2", "quant.rtn.group_size=8", "quant.finetune.steps=9",
                           "quant.finetune.lr=0.5", "calib.activation_dtype=float32"})
    EXPECT_EQ(with(same), q) << same;
  for (const char* differs : {"quant.glvq.iters=8", "quant.bits=3", "calib.seed=1",
                              "calib.propagate=quantized", "seed=1", "calib.samples=8", "quant.finetune.block=true",
                              "calib.activation_dtype=bfloat16", "quant.sequential=false"})
    EXPECT_NE(with(differs), q) << differs;
  // With block fine-tuning on, its settings are part of the result.
  auto with2 = [&](const std::string& o) {
    return quant_config_to_json(parse_config(text, "t", {"quant.finetune.block=true", "quant.sequential=false", o}));
  };
  EXPECT_EQ(with2("quant.finetune.steps=9")["quant"]["finetune"]["steps"], 9);
  for (const char* differs : {"quant.finetune.steps=9", "quant.finetune.lr=0.5", "quant.finetune.batch=2",
                              "quant.finetune.heldout=0.5", "quant.finetune.eval_every=3",
                              "quant.finetune.patience=7"})
    EXPECT_NE(with2(differs), with2("threads=1")) << differs;
  EXPECT_NE(with2("quant.finetune.unquantized=true"), with2("threads=1"));
  // Keys that are off stay out, so that runs made before they existed still match; sequential is
  // on by default for GLVQ and GPTQ and means nothing to RTN.
  EXPECT_EQ(q["quant"]["sequential"], true);
  EXPECT_FALSE(with("quant.sequential=false")["quant"].contains("sequential"));
  EXPECT_FALSE(with("quant.method=rtn")["quant"].contains("sequential"));
  EXPECT_FALSE(with2("threads=1")["quant"]["finetune"].contains("unquantized"));
  // End-to-end fine-tuning runs in gather, after the blocks: it never invalidates one.
  for (const char* same : {"quant.finetune.e2e=true", "quant.finetune.e2e_steps=9", "quant.finetune.e2e_lr=0.5"})
    EXPECT_EQ(with2(same), with2("threads=1")) << same;

  const nlohmann::json r = quant_config_to_json(parse_config(text, "t", {"quant.method=rtn"}));
  EXPECT_EQ(r["quant"], (nlohmann::json{{"method", "rtn"}, {"bits", 2.25}, {"rtn", {{"group_size", 16}}}}));
  const nlohmann::json n = quant_config_to_json(parse_config(text, "t", {"quant.method=none"}));
  EXPECT_EQ(n["quant"], (nlohmann::json{{"method", "none"}, {"bits", 2.25}}));
}

TEST(ConfigJson, DocsListEveryKey) {
  std::ifstream f("docs/CONFIG.md");
  ASSERT_TRUE(f.is_open()) << "run the tests from the repository root";
  std::stringstream doc;
  doc << f.rdbuf();
  std::vector<std::string> keys;
  flatten(config_to_json(Config{}), "", keys);
  for (const auto& k : keys)
    EXPECT_NE(doc.str().find("`" + k + "`"), std::string::npos) << k << " is missing from docs/CONFIG.md";
}

// ---------------------------------------------------------------- shipped configs

TEST(ConfigShipped, TinyLlamaLoads) {
  const Config c = load_config("configs/tiny-llama.yaml");
  EXPECT_EQ(c.source_file, "configs/tiny-llama.yaml");
  EXPECT_EQ(c.model.path, "models/tiny-llama");
  EXPECT_EQ(c.data.calib, "data/calib.txt");
  EXPECT_EQ(c.data.eval, "data/eval.txt");
  EXPECT_EQ(c.calib.ctx, 1024);
  EXPECT_EQ(c.calib.samples, 128);
  EXPECT_EQ(c.eval.ctx, 1024);
  EXPECT_EQ(c.eval.max_chunks, 0);
  EXPECT_EQ(c.quant.method, "glvq");
  EXPECT_DOUBLE_EQ(c.quant.bits, 2.0);
  EXPECT_EQ(c.device, "auto");
  EXPECT_EQ(c.output_dir, "runs/tiny-llama");
  // The file spells out the defaults, so it matches the struct initialisers.
  const nlohmann::json defaults = config_to_json(Config{});
  const nlohmann::json j = config_to_json(c);
  EXPECT_EQ(j["quant"]["glvq"], defaults["quant"]["glvq"]);
  EXPECT_EQ(j["quant"]["gptq"], defaults["quant"]["gptq"]);
  EXPECT_EQ(j["quant"]["rtn"], defaults["quant"]["rtn"]);
}

TEST(ConfigShipped, Llama2_70bLoads) {
  const Config c = load_config("configs/llama2-70b-2bit.yaml");
  EXPECT_EQ(c.model.path, "/path/to/Llama-2-70b-hf");
  EXPECT_EQ(c.calib.ctx, 4096);
  EXPECT_EQ(c.calib.samples, 128);
  EXPECT_EQ(c.calib.activation_dtype, "bfloat16");  // halves a rank's largest host allocation
  EXPECT_EQ(c.eval.ctx, 4096);
  EXPECT_EQ(c.quant.method, "glvq");
  EXPECT_DOUBLE_EQ(c.quant.bits, 2.0);
  EXPECT_EQ(c.device, "cuda");
  EXPECT_EQ(c.output_dir, "runs/llama2-70b-2bit");
  // The defaults, shaped code included (its search runs on the GPU: docs/GLVQ.md, "Time").
  EXPECT_EQ(config_to_json(c)["quant"]["glvq"], config_to_json(Config{})["quant"]["glvq"]);
}

TEST(ConfigShipped, OverridesOnAShippedConfig) {
  const Config c = load_config("configs/tiny-llama.yaml",
                               {"quant.bits=3", "device=cpu", "model.path=/data/m"});
  EXPECT_DOUBLE_EQ(c.quant.bits, 3.0);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_EQ(c.model.path, "/data/m");
}

}  // namespace
}  // namespace glvq
