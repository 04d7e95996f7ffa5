#pragma once
/// The MPI runtime every stage talks through: control messages and the
/// activations that flow rank to rank. Every MPI return code is checked; a
/// failing rank aborts the whole job (see abort_job) instead of hanging it.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

namespace glvq {

class NcclLink;

class Comm {
 public:
  /// MPI_Init_thread (works without mpirun as a single rank). Errors return
  /// codes instead of aborting, so MPI_CHECK can name the failing call.
  static Comm& init(int* argc, char*** argv);
  static Comm& get();
  void finalize();

  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }

  void barrier();
  void bcast_string(std::string& s, int root = 0);
  void bcast_ints(std::vector<int32_t>& v, int root = 0);
  double allreduce_sum(double x);
  double allreduce_max(double x);
  std::vector<std::string> gather_strings(const std::string& s, int root = 0);

  /// Collective. TRANSPORT is "auto", "mpi" or "nccl" (config key transport):
  /// GPU tensors then move by NCCL when this binary has NCCL, DEVICE is a GPU
  /// and no two ranks share one (NCCL refuses that); "auto" falls back to MPI
  /// otherwise, "nccl" fails. Returns the transport in use, with the reason.
  std::string select_transport(const std::string& transport, const at::Device& device);
  bool uses_nccl() const { return nccl_ != nullptr; }

  /// Sends a tensor (any shape, sent as float32) to DST: a GPU tensor by NCCL
  /// when selected, else by MPI through host memory.
  void send_tensor(const at::Tensor& t, int dst, int tag);
  /// Receives the tensor sent with the same tag; returns it on DEVICE.
  at::Tensor recv_tensor(int src, int tag, const at::Device& device);

  /// Kills every rank with CODE (MPI_Abort): the only safe exit when this rank
  /// failed while others may be blocked waiting for it.
  [[noreturn]] void abort_job(int code);

  /// Seconds this rank spent blocked in send/recv (pipeline bubbles and
  /// transfer time together), and the payload bytes it sent.
  double wait_seconds() const { return wait_s_; }
  double bytes_sent() const { return bytes_sent_; }
  /// Of those: seconds spent in sends alone, and the number of sends.
  double send_seconds() const { return send_s_; }
  int64_t sends() const { return sends_; }

 private:
  Comm();
  ~Comm();
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool finalized_ = false;
  double wait_s_ = 0, bytes_sent_ = 0, send_s_ = 0;
  int64_t sends_ = 0;
  std::unique_ptr<NcclLink> nccl_;
};

}  // namespace glvq
