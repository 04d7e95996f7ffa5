#include "jobs/interrupts.h"

#include "common/error.h"
#include "common/log.h"
#include "common/preempt.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>

namespace glvq {
namespace {

struct Fault {
  std::string stage, action, path;
  int rank = -1, at = -1;
};

Fault parse_fault(const char* text) {
  Fault f;
  std::map<std::string, std::string> kv;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t eq = item.find('=');
    GLVQ_USAGE_CHECK(eq != std::string::npos, "GLVQ_FAULT=\"{}\": \"{}\" is not key=value (test-only hook, see "
                     "jobs/interrupts.h)", text, item);
    kv[item.substr(0, eq)] = item.substr(eq + 1);
  }
  try {
    f.stage = kv.at("stage");
    f.action = kv.at("action");
    f.rank = std::stoi(kv.at("rank"));
    f.at = std::stoi(kv.at("at"));
    if (kv.count("path")) f.path = kv.at("path");
  } catch (const std::exception&) {
    GLVQ_USAGE_CHECK(false, "GLVQ_FAULT=\"{}\" needs stage=, rank=, at= and action= (test-only hook)", text);
  }
  GLVQ_USAGE_CHECK(f.action == "kill" || f.action == "stop" || f.action == "term" || f.action == "usr1" ||
                       f.action == "throw" || f.action == "fill",
                   "GLVQ_FAULT: action \"{}\" is not kill, stop, term, usr1, throw or fill", f.action);
  GLVQ_USAGE_CHECK(f.action != "fill" || !f.path.empty(), "GLVQ_FAULT: action=fill needs path=FILE");
  return f;
}

const Fault* configured_fault() {
  static const std::optional<Fault> f = []() -> std::optional<Fault> {
    const char* env = std::getenv("GLVQ_FAULT");
    if (!env || !*env) return std::nullopt;
    return parse_fault(env);
  }();
  return f ? &*f : nullptr;
}

// Grows PATH until its file system refuses (ENOSPC): the disk fills up under a
// running job at a chosen point, as when another job on a shared volume does.
void fill_file_system(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  GLVQ_CHECK(f != nullptr, "GLVQ_FAULT: cannot create {}: {}", path, std::strerror(errno));
  static const std::string chunk(1 << 16, '\0');
  size_t written = 0;
  while (std::fwrite(chunk.data(), 1, chunk.size(), f) == chunk.size()) written += chunk.size();
  std::fclose(f);  // flushes what fit; the remaining tail of the file system is full too
  log_warn("GLVQ_FAULT: {} filled its file system ({} MB)", path, written >> 20);
}

// A string literal per stage (throw_if_preempted keeps the pointer).
const char* stage_where(const std::string& stage) {
  if (stage == "calibrate") return "calibrate (between micro-batches)";
  if (stage == "learn") return "learn (between blocks)";
  if (stage == "gather") return "gather (between blocks)";
  if (stage == "validate") return "validate (between micro-batches)";
  return "a stage boundary";
}

}  // namespace

void stage_boundary(const std::string& stage, int rank, int count) {
  if (const Fault* f = configured_fault(); f && f->stage == stage && f->rank == rank && f->at == count) {
    log_warn("GLVQ_FAULT: injecting \"{}\" on rank {} at {} boundary {}", f->action, rank, stage, count);
    if (f->action == "kill") std::raise(SIGKILL);
    if (f->action == "stop") std::raise(SIGSTOP);  // alive but stuck, as on a hung GPU or file system
    if (f->action == "term") std::raise(SIGTERM);
    if (f->action == "usr1") std::raise(SIGUSR1);
    if (f->action == "fill") fill_file_system(f->path);
    if (f->action == "throw") GLVQ_FAIL("GLVQ_FAULT: injected failure in {} on rank {}", stage, rank);
  }
  throw_if_preempted(stage_where(stage));
}

}  // namespace glvq
