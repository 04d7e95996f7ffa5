#pragma once
/// Preemption: Slurm (scancel, --signal, a requeue) sends SIGTERM or SIGUSR1.
/// The handler only records the signal; the stages look at it at their
/// boundaries (jobs/interrupts.h), finish or abandon the current unit of work
/// cleanly and exit with kExitPreempted, so that a requeued job resumes.

namespace glvq {

/// Installs the SIGTERM and SIGUSR1 handlers (idempotent).
void install_preemption_handlers();
/// The signal received (SIGTERM or SIGUSR1), or 0.
int preemption_signal();

}  // namespace glvq
