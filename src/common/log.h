#pragma once
/// Per-rank logging: every rank writes <output_dir>/logs/rank-<r>.log; rank 0
/// also prints info lines and progress (with ETA) to the terminal.
#include <fmt/format.h>

#include <chrono>
#include <string>

namespace glvq {

enum class LogLevel { Debug, Info, Warn, Error };

/// Opens the rank's log file (appending: a resumed run continues the log).
void log_init(const std::string& output_dir, int rank, int world);
void log_close();
void log_write(LogLevel level, const std::string& msg);

template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  log_write(LogLevel::Info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log_write(LogLevel::Warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
  log_write(LogLevel::Debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
  log_write(LogLevel::Error, fmt::format(f, std::forward<Args>(args)...));
}

/// Progress of a long loop: on rank 0 a terminal line "stage  12/329 (3.6%)
/// elapsed 0:10  ETA 4:31" at most every `interval_s` (rewritten in place with
/// '\r' on a TTY, full lines otherwise); always the final line from done().
/// Every rank also writes the line to its log file at most every 30 s.
class Progress {
 public:
  Progress(std::string stage, long total, double interval_s = 2.0);
  void step(long n = 1, const std::string& extra = "");
  void done(const std::string& extra = "");
  double elapsed_s() const;

 private:
  std::string stage_;
  long total_, done_ = 0;
  double interval_s_;
  std::chrono::steady_clock::time_point start_, last_;
  std::chrono::steady_clock::time_point last_log_;  ///< last progress line in the rank's log file
  void emit(bool final, const std::string& extra);
};

/// Peak resident set size of this process in bytes (from /proc/self/status).
size_t peak_rss_bytes();

}  // namespace glvq
