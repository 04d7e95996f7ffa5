#pragma once
// The tools' common ending: run BODY, and turn an exception into the message
// "<tool>: error: ..." and the exit code the tools document (glvq::Error carries
// its own; anything else is an error with SUBJECT, the file or directory at hand).
#include "common/error.h"
#include "common/preempt.h"

#include <cstdio>
#include <exception>
#include <string>

namespace glvq {

/// For the tools whose loops poll throw_if_preempted (export, generate): SIGTERM
/// and SIGUSR1 end them with exit 3 at the next check, or after 10 s at the latest.
inline void answer_preemption() {
  install_preemption_handlers();
  set_preemption_grace(10);
}

template <typename Body>
int run_tool(const char* tool, const std::string& subject, Body&& body) {
  try {
    return body();
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.message().c_str());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s: %s\n", tool, subject.c_str(), e.what());
    return kExitError;
  }
}

}  // namespace glvq
