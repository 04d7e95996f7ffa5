#include "common/preempt.h"

#include <csignal>

namespace glvq {
namespace {
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_preemption(int sig) { g_signal = sig; }  // async-signal-safe: one store
}  // namespace

void install_preemption_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_preemption;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // blocking reads and MPI progress carry on; stages poll the flag
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

int preemption_signal() { return g_signal; }

}  // namespace glvq
