#include "common/log.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <mutex>

#include "common/error.h"
#include "common/fs_util.h"

namespace glvq {
namespace {

constexpr double kLogFileProgressInterval = 30.0;

struct LogState {
  std::mutex mu;
  std::FILE* file = nullptr;
  int rank = -1;  ///< -1 until log_init: behave like a single-process rank 0 on the terminal
  int world = 1;
  bool tty = ::isatty(STDERR_FILENO) == 1;
  bool progress_open = false;  ///< a '\r' progress line is on the terminal without its newline
};

LogState& state() {
  static LogState s;
  return s;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Debug: return "DEBUG";
    case LogLevel::Info: return "INFO";
    case LogLevel::Warn: return "WARN";
    case LogLevel::Error: return "ERROR";
  }
  return "?";
}

std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Callers hold s.mu.
void file_line_locked(LogState& s, LogLevel level, const std::string& msg) {
  if (!s.file) return;
  const std::string line = fmt::format("{} [rank {}] {} {}\n", utc_timestamp(), s.rank, level_name(level), msg);
  std::fwrite(line.data(), 1, line.size(), s.file);
  std::fflush(s.file);  // a crashed or killed rank still leaves its last lines
}

void terminal_line_locked(LogState& s, const std::string& line) {
  // Clear a pending '\r' progress line so the message does not run into it; the next
  // progress step redraws it.
  if (s.progress_open) std::fputs("\r\033[K", stderr);
  s.progress_open = false;
  std::fputs(line.c_str(), stderr);
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const long t = std::lround(seconds);
  const long h = t / 3600, m = (t / 60) % 60, sec = t % 60;
  if (h > 0) return fmt::format("{}:{:02d}:{:02d}", h, m, sec);
  return fmt::format("{}:{:02d}", m, sec);
}

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

void log_init(const std::string& output_dir, int rank, int world) {
  const std::string dir = output_dir + "/logs";
  ensure_dir(dir);
  const std::string path = fmt::format("{}/rank-{}.log", dir, rank);
  std::FILE* f = std::fopen(path.c_str(), "a");
  GLVQ_CHECK(f != nullptr, "cannot open log file {}: {}", path, std::strerror(errno));
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.file) std::fclose(s.file);
  s.file = f;
  s.rank = rank;
  s.world = world;
  s.tty = ::isatty(STDERR_FILENO) == 1;
}

void log_close() {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.file) std::fclose(s.file);
  s.file = nullptr;
  s.rank = -1;
  s.world = 1;
}

void log_write(LogLevel level, const std::string& msg) {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  file_line_locked(s, level, msg);
  if (level == LogLevel::Debug) return;
  const char* tag = level == LogLevel::Warn ? "warning: " : level == LogLevel::Error ? "error: " : "";
  if (s.rank <= 0) {
    terminal_line_locked(s, tag + msg);
  } else if (level != LogLevel::Info) {
    terminal_line_locked(s, fmt::format("[rank {}] {}{}", s.rank, tag, msg));
  }
}

Progress::Progress(std::string stage, long total, double interval_s)
    : stage_(std::move(stage)), total_(total), interval_s_(interval_s) {
  start_ = last_ = last_log_ = std::chrono::steady_clock::now();
}

void Progress::step(long n, const std::string& extra) {
  done_ += n;
  emit(false, extra);
}

void Progress::done(const std::string& extra) { emit(true, extra); }

double Progress::elapsed_s() const { return seconds_between(start_, std::chrono::steady_clock::now()); }

void Progress::emit(bool final, const std::string& extra) {
  const auto now = std::chrono::steady_clock::now();
  const bool to_terminal = final || seconds_between(last_, now) >= interval_s_;
  const bool to_file = final || seconds_between(last_log_, now) >= kLogFileProgressInterval;
  if (!to_terminal && !to_file) return;

  const double elapsed = seconds_between(start_, now);
  std::string line = fmt::format("{}  {}/{}", stage_, done_, total_);
  if (total_ > 0) line += fmt::format(" ({:.1f}%)", 100.0 * static_cast<double>(done_) / static_cast<double>(total_));
  line += "  elapsed " + format_duration(elapsed);
  if (!final) {
    const double eta = done_ > 0 && total_ >= done_
                           ? elapsed / static_cast<double>(done_) * static_cast<double>(total_ - done_)
                           : -1.0;
    line += "  ETA " + format_duration(eta);
  }
  if (!extra.empty()) line += "  " + extra;

  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (to_file) {
    file_line_locked(s, LogLevel::Info, line);
    last_log_ = now;
  }
  if (to_terminal) {
    last_ = now;
    if (s.rank > 0) return;  // only rank 0 talks to the terminal about progress
    if (s.tty) {
      // Rewrite the line in place; \033[K drops leftovers of a longer previous line.
      std::fputs(("\r" + line + "\033[K").c_str(), stderr);
      if (final) std::fputc('\n', stderr);
      s.progress_open = !final;
    } else {
      std::fputs((line + "\n").c_str(), stderr);
    }
    std::fflush(stderr);
  }
}

size_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      // "VmHWM:     12345 kB"
      return static_cast<size_t>(std::strtoull(line.c_str() + 6, nullptr, 10)) * 1024;
    }
  }
  return 0;
}

}  // namespace glvq
