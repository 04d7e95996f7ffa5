#include "dist/transfer_watchdog.h"

#include "common/log.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace glvq {
namespace {

using Clock = std::chrono::steady_clock;

struct State {
  std::mutex mu;
  double limit_s = 0;
  bool thread_started = false;
  bool waiting = false;
  Clock::time_point since;
  std::string what;
};

// Never destroyed: the detached thread may still read it while the process exits.
State& state() {
  static State* s = new State;
  return *s;
}

[[noreturn]] void watch_loop() {
  State& s = state();
  for (;;) {
    double limit = 0;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      limit = s.limit_s;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(std::clamp(limit / 10, 0.05, 1.0)));
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.waiting || s.limit_s <= 0) continue;
    const double waited = std::chrono::duration<double>(Clock::now() - s.since).count();
    if (waited <= s.limit_s) continue;
    log_error("waited {:.0f}s for {} (comm_timeout_s: {:.0f}): that rank is alive but stuck (hung GPU, NCCL or "
              "file system?) or far slower than expected; ending the job with exit 4. See that rank's log; raise "
              "comm_timeout_s if such a wait is normal here; --resume continues from the finished blocks",
              waited, s.what, s.limit_s);
    std::_Exit(4);  // the main thread is blocked inside MPI/NCCL: no clean unwinding is possible
  }
}

}  // namespace

void set_transfer_timeout(double seconds) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.limit_s = seconds;
  if (seconds > 0 && !s.thread_started) {
    std::thread(watch_loop).detach();
    s.thread_started = true;
  }
}

TransferWatch::TransferWatch(std::string what) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.waiting = true;
  s.since = Clock::now();
  s.what = std::move(what);
}

TransferWatch::~TransferWatch() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.waiting = false;
}

}  // namespace glvq
