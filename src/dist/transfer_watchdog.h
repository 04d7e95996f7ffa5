#pragma once
/// A limit on how long one activation transfer of the pipeline may wait. A
/// dead peer ends the job through mpirun/srun, but a peer that is alive and
/// stuck (a hung GPU or NCCL call, a frozen file system) would keep every rank
/// waiting until the Slurm time limit; past the limit this rank logs what it
/// waited for and exits with 4 ("another rank failed"), and the launcher ends
/// the rest. Only pipeline transfers are watched: the wait between learn and
/// gather can legitimately last a whole rank's learning (after a --resume).
#include <string>

namespace glvq {

/// Seconds one transfer may wait (config key comm_timeout_s); 0 turns the
/// watchdog off. The first positive limit starts its thread.
void set_transfer_timeout(double seconds);

/// Marks a transfer in progress for its lifetime; WHAT says what is awaited
/// ("micro-batch 3 from rank 0"). One at a time per process.
class TransferWatch {
 public:
  explicit TransferWatch(std::string what);
  ~TransferWatch();
  TransferWatch(const TransferWatch&) = delete;
  TransferWatch& operator=(const TransferWatch&) = delete;
};

}  // namespace glvq
