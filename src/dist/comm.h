#pragma once
/// The MPI runtime every stage talks through: control messages and the
/// activations that flow rank to rank. Every MPI return code is checked; a
/// failing rank aborts the whole job (see abort_job) instead of hanging it.
#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace glvq {

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

  /// Sends a float32 tensor (any shape; copied to host if on a GPU) to DST.
  void send_tensor(const at::Tensor& t, int dst, int tag);
  /// Receives the tensor sent with the same tag; returns it on DEVICE.
  at::Tensor recv_tensor(int src, int tag, const at::Device& device);

  /// Kills every rank with CODE (MPI_Abort): the only safe exit when this rank
  /// failed while others may be blocked waiting for it.
  [[noreturn]] void abort_job(int code);

  /// Seconds this rank spent blocked in send/recv (pipeline bubbles).
  double wait_seconds() const { return wait_s_; }
  double bytes_sent() const { return bytes_sent_; }

 private:
  Comm() = default;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool finalized_ = false;
  double wait_s_ = 0, bytes_sent_ = 0;
};

}  // namespace glvq
