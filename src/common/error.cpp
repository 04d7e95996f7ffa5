#include "common/error.h"

#include <cstdio>
#include <cstdlib>

namespace glvq {
namespace {
int g_rank = -1;

std::string decorate(const std::string& msg, const char* file, int line) {
  std::string where = fmt::format("[{}:{}", file, line);
  if (g_rank >= 0) where += fmt::format(", rank {}", g_rank);
  return msg + " " + where + "]";
}
}  // namespace

int error_rank() { return g_rank; }
void set_error_rank(int rank) { g_rank = rank; }

Error::Error(const std::string& msg, const char* file, int line, int exit_code)
    : std::runtime_error(decorate(msg, file, line)), message_(msg), exit_code_(exit_code) {}

void assert_fail(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "glvq internal error: assertion '%s' failed at %s:%d (rank %d); please report it\n",
               cond, file, line, g_rank);
  std::abort();
}

}  // namespace glvq
