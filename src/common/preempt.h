#pragma once
/// Preemption: Slurm (scancel, --signal, a requeue) sends SIGTERM or SIGUSR1.
/// The handler only records the signal. Long loops poll it with
/// throw_if_preempted() (learning steps, encodes, GPTQ's columns, every
/// micro-batch, gather's layers, export's tensors, generate's tokens), which
/// throws Preempted; the stage abandons the unfinished block (files are written
/// to a temporary name and renamed, so nothing half-written is left) and the
/// job exits with kExitPreempted (3), so that a requeued job resumes.
///
/// Two cases polling cannot answer are the preemption watcher's (a thread the
/// worker starts, set_preemption_grace): a rank blocked in an MPI/NCCL wait
/// (PreemptibleWait) exits 3 at once, and a rank that has not reached a check
/// within preempt_grace_s seconds of the signal (inside one long library call,
/// e.g. a Cholesky factorization at 70B shapes on a CPU) exits 3 without
/// unwinding. Either is as safe as the clean path: everything on disk is
/// complete; at most a temporary file is left, which the next run ignores or
/// removes. docs/RELIABILITY.md states the measured latencies.
#include "common/error.h"

#include <cstdint>
#include <string>

namespace glvq {

/// Installs the SIGTERM and SIGUSR1 handlers (idempotent).
void install_preemption_handlers();
/// The signal received (SIGTERM or SIGUSR1), or 0.
int preemption_signal();
/// "SIGTERM" or "SIGUSR1".
const char* preemption_signal_name(int sig);

/// What throw_if_preempted throws: exit code kExitPreempted, message
/// "preempted by SIGTERM in WHERE"; WHERE names the loop that noticed the
/// signal (e.g. "the GLVQ learning steps"). The catcher says what to do next.
class Preempted : public Error {
 public:
  Preempted(int sig, std::string where, const char* file, int line);
  int signal() const { return signal_; }
  const std::string& where() const { return where_; }

 private:
  int signal_;
  std::string where_;
};

/// The cancellation point of a long loop: throws Preempted when SIGTERM or
/// SIGUSR1 has arrived. Costs two relaxed atomic operations and a clock read;
/// call it at least every ~0.1 s of work. WHERE must be a string literal.
void throw_if_preempted(const char* where);

/// Starts the preemption watcher (once; later calls change the grace): see the
/// file comment. GRACE_S <= 0 turns the hard exit after the grace off (a rank
/// blocked in a wait still exits at once).
void set_preemption_grace(double grace_s);

/// Marks the calling thread blocked in a wait that cannot poll (an MPI or
/// NCCL call) for its lifetime. Entering with a signal pending throws
/// Preempted; a signal that comes during the wait makes the watcher end the
/// process with exit 3 (when it runs; without it the wait goes on). Not nested.
class PreemptibleWait {
 public:
  explicit PreemptibleWait(const char* what);
  ~PreemptibleWait();
  PreemptibleWait(const PreemptibleWait&) = delete;
  PreemptibleWait& operator=(const PreemptibleWait&) = delete;
};

/// The longest stretch of work between two consecutive checks (a
/// PreemptibleWait counts as a check at both ends; the time blocked in it is
/// not work), since the last reset: what bounds the time from a signal to the
/// exception.
struct PreemptionGap {
  double seconds = 0;
  const char* from = "";  ///< the check before the stretch
  const char* to = "";    ///< the check after it
};
PreemptionGap preemption_longest_gap(bool reset);

/// Test-only: forget a recorded signal; make the N-th check from now (1 = the
/// next) behave as if SIGTERM had arrived (0 disarms); count the checks made.
namespace preempt_testing {
void clear();
void arm_at_check(int64_t n);
int64_t checks();
}  // namespace preempt_testing

}  // namespace glvq
