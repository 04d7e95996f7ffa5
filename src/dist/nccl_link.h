#pragma once
/// Point-to-point float32 transfers between the GPUs of neighbouring pipeline
/// ranks over NCCL. Built only with NCCL (GLVQ_WITH_NCCL); elsewhere
/// nccl_built() is false and Comm keeps every tensor on MPI.
#include <cstdint>
#include <memory>
#include <string>

namespace glvq {

/// True when this binary was compiled with NCCL.
bool nccl_built();

class NcclLink {
 public:
  /// The bytes of a fresh ncclUniqueId (called on rank 0, then broadcast).
  static std::string make_unique_id();
  /// Collective: every rank of the job calls it with the same ID and its own
  /// GPU. Two ranks on one GPU make NCCL fail: callers check that first.
  static std::unique_ptr<NcclLink> create(const std::string& id, int rank, int world, int device_index);
  ~NcclLink();
  NcclLink(const NcclLink&) = delete;
  NcclLink& operator=(const NcclLink&) = delete;

  /// Sends N floats at device pointer P to PEER and waits until they left
  /// (the pipeline may free the tensor right after).
  void send(const float* p, int64_t n, int peer);
  /// Receives N floats from PEER into device pointer P and waits for them.
  void recv(float* p, int64_t n, int peer);

 private:
  struct Impl;
  explicit NcclLink(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace glvq
