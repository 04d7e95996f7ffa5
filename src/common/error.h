#pragma once
/// One error path for the whole project: user-facing failures throw glvq::Error
/// with a message that says what to do; broken invariants use GLVQ_ASSERT.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace glvq {

/// Exit codes of glvq-worker and the tools; scripts (slurm/) rely on them.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,        ///< runtime failure (bad data, numerical failure, I/O)
  kExitUsage = 2,        ///< bad command line or config: nothing was started
  kExitPreempted = 3,    ///< stopped by SIGTERM/SIGUSR1; --resume continues
  kExitPeerFailed = 4,   ///< another rank failed; its log says why
};

/// The MPI rank this process reports in messages (-1 before MPI starts).
int error_rank();
void set_error_rank(int rank);

class Error : public std::runtime_error {
 public:
  Error(const std::string& msg, const char* file, int line, int exit_code = kExitError);
  int exit_code() const { return exit_code_; }
  const std::string& message() const { return message_; }

 private:
  std::string message_;
  int exit_code_;
};

/// Thrown for mistakes in the command line or config (exit code kExitUsage).
class UsageError : public Error {
 public:
  UsageError(const std::string& msg, const char* file, int line) : Error(msg, file, line, kExitUsage) {}
};

[[noreturn]] void assert_fail(const char* cond, const char* file, int line);

}  // namespace glvq

#define GLVQ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) throw ::glvq::Error(fmt::format(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

#define GLVQ_FAIL(...) throw ::glvq::Error(fmt::format(__VA_ARGS__), __FILE__, __LINE__)

#define GLVQ_USAGE_CHECK(cond, ...)                                                  \
  do {                                                                               \
    if (!(cond)) throw ::glvq::UsageError(fmt::format(__VA_ARGS__), __FILE__, __LINE__); \
  } while (0)

#define GLVQ_ASSERT(cond)                                         \
  do {                                                            \
    if (!(cond)) ::glvq::assert_fail(#cond, __FILE__, __LINE__);  \
  } while (0)
