#include "common/preempt.h"

#include "common/log.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace glvq {
namespace {

using Clock = std::chrono::steady_clock;

// Lock-free atomics are async-signal-safe; the handler only stores the signal.
std::atomic<int> g_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

std::atomic<int64_t> g_checks{0};
std::atomic<int64_t> g_arm_at{0};  // test hook: the check number that acts as SIGTERM; 0 = none

// The longest stretch between checks (main thread; relaxed: a statistic).
std::atomic<int64_t> g_last_check_ns{0};
std::atomic<const char*> g_last_where{"start"};
std::mutex g_gap_mu;
PreemptionGap g_gap;

// The watcher's view of the main thread.
std::atomic<const char*> g_blocked_in{nullptr};
std::atomic<double> g_grace_s{0};
std::atomic<bool> g_watcher_started{false};

extern "C" void on_preemption(int sig) { g_signal.store(sig, std::memory_order_relaxed); }

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// A check at WHERE ends the current stretch of work (its length is counted
// unless COUNT is false: the time blocked in a PreemptibleWait is not work).
void mark_check(const char* where, bool count) {
  const int64_t now = now_ns(), last = g_last_check_ns.exchange(now, std::memory_order_relaxed);
  const char* from = g_last_where.exchange(where, std::memory_order_relaxed);
  if (!count || last == 0) return;
  const double s = double(now - last) * 1e-9;
  std::lock_guard<std::mutex> lock(g_gap_mu);
  if (s > g_gap.seconds) g_gap = {s, from, where};
}

[[noreturn]] void watch_loop() {
  bool noticed = false;
  Clock::time_point since;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const int sig = g_signal.load(std::memory_order_relaxed);
    if (sig == 0) continue;
    if (!noticed) since = Clock::now(), noticed = true;
    if (const char* what = g_blocked_in.load()) {
      log_error("preempted by {} while waiting for {}: work finished so far is saved; exiting with 3 at once (the "
                "wait cannot be interrupted); run again with --resume (Slurm: the batch script requeues the job)",
                preemption_signal_name(sig), what);
      std::_Exit(kExitPreempted);
    }
    const double grace = g_grace_s.load(std::memory_order_relaxed);
    const double waited = std::chrono::duration<double>(Clock::now() - since).count();
    if (grace > 0 && waited > grace) {
      log_error("preempted by {} {:.1f}s ago and no preemption check was reached since (preempt_grace_s: {:g}; the "
                "last check was in {}): exiting with 3 without clean-up; work finished so far is saved, at most a "
                "temporary file is left; run again with --resume",
                preemption_signal_name(sig), waited, grace, g_last_where.load(std::memory_order_relaxed));
      std::_Exit(kExitPreempted);
    }
  }
}

}  // namespace

void install_preemption_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_preemption;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking reads and MPI progress carry on; loops poll the flag
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

int preemption_signal() { return g_signal.load(std::memory_order_relaxed); }

const char* preemption_signal_name(int sig) { return sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM"; }

Preempted::Preempted(int sig, std::string where, const char* file, int line)
    : Error(fmt::format("preempted by {} in {}", preemption_signal_name(sig), where),
            file, line, kExitPreempted),
      signal_(sig),
      where_(std::move(where)) {}

void throw_if_preempted(const char* where) {
  const int64_t n = g_checks.fetch_add(1, std::memory_order_relaxed) + 1;
  mark_check(where, true);
  int sig = g_signal.load(std::memory_order_relaxed);
  if (sig == 0 && n == g_arm_at.load(std::memory_order_relaxed)) sig = SIGTERM;
  if (sig != 0) throw Preempted(sig, where, __FILE__, __LINE__);
}

void set_preemption_grace(double grace_s) {
  g_grace_s.store(grace_s);
  if (!g_watcher_started.exchange(true)) std::thread(watch_loop).detach();
}

PreemptibleWait::PreemptibleWait(const char* what) {
  // Blocked first, then the look: a signal either is seen here or sees the mark (both seq_cst).
  g_blocked_in.store(what);
  mark_check(what, true);
  if (const int sig = g_signal.load()) {
    g_blocked_in.store(nullptr);
    throw Preempted(sig, what, __FILE__, __LINE__);
  }
}

PreemptibleWait::~PreemptibleWait() {
  g_blocked_in.store(nullptr);
  mark_check(g_last_where.load(std::memory_order_relaxed), false);
}

PreemptionGap preemption_longest_gap(bool reset) {
  std::lock_guard<std::mutex> lock(g_gap_mu);
  const PreemptionGap g = g_gap;
  if (reset) g_gap = {};
  return g;
}

namespace preempt_testing {
void clear() { g_signal.store(0); }
void arm_at_check(int64_t n) { g_arm_at.store(n == 0 ? 0 : g_checks.load() + n); }
int64_t checks() { return g_checks.load(); }
}  // namespace preempt_testing

}  // namespace glvq
