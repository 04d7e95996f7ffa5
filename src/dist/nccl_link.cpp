#include "dist/nccl_link.h"

#include "common/error.h"

#ifdef GLVQ_WITH_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>

#define NCCL_CHECK(call)                                                                              \
  do {                                                                                                \
    ncclResult_t rc_ = (call);                                                                        \
    GLVQ_CHECK(rc_ == ncclSuccess, "NCCL call {} failed: {} ({}); set NCCL_DEBUG=WARN for details, or " \
               "transport: mpi to avoid NCCL", #call, ncclGetErrorString(rc_), ncclGetLastError(nullptr)); \
  } while (0)
#define CUDA_RT_CHECK(call)                                                                   \
  do {                                                                                        \
    cudaError_t rc_ = (call);                                                                 \
    GLVQ_CHECK(rc_ == cudaSuccess, "CUDA call {} failed: {}", #call, cudaGetErrorString(rc_)); \
  } while (0)

namespace glvq {

bool nccl_built() { return true; }

struct NcclLink::Impl {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  int device = 0;
};

NcclLink::NcclLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

NcclLink::~NcclLink() {
  if (!impl_) return;
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

std::string NcclLink::make_unique_id() {
  ncclUniqueId id;
  NCCL_CHECK(ncclGetUniqueId(&id));
  return std::string(id.internal, sizeof(id.internal));
}

std::unique_ptr<NcclLink> NcclLink::create(const std::string& id_bytes, int rank, int world, int device_index) {
  ncclUniqueId id;
  GLVQ_ASSERT(id_bytes.size() == sizeof(id.internal));
  std::memcpy(id.internal, id_bytes.data(), sizeof(id.internal));
  auto impl = std::make_unique<Impl>();
  impl->device = device_index;
  CUDA_RT_CHECK(cudaSetDevice(device_index));
  // A blocking stream orders itself after LibTorch's work on the legacy default
  // stream, so a tensor produced there is complete before NCCL reads it.
  CUDA_RT_CHECK(cudaStreamCreate(&impl->stream));
  NCCL_CHECK(ncclCommInitRank(&impl->comm, world, id, rank));
  return std::unique_ptr<NcclLink>(new NcclLink(std::move(impl)));
}

void NcclLink::send(const float* p, int64_t n, int peer) {
  CUDA_RT_CHECK(cudaSetDevice(impl_->device));
  NCCL_CHECK(ncclSend(p, static_cast<size_t>(n), ncclFloat32, peer, impl_->comm, impl_->stream));
  CUDA_RT_CHECK(cudaStreamSynchronize(impl_->stream));
}

void NcclLink::recv(float* p, int64_t n, int peer) {
  CUDA_RT_CHECK(cudaSetDevice(impl_->device));
  NCCL_CHECK(ncclRecv(p, static_cast<size_t>(n), ncclFloat32, peer, impl_->comm, impl_->stream));
  CUDA_RT_CHECK(cudaStreamSynchronize(impl_->stream));
}

}  // namespace glvq

#else  // no NCCL in this build

namespace glvq {

bool nccl_built() { return false; }

struct NcclLink::Impl {};
NcclLink::NcclLink(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclLink::~NcclLink() = default;

std::string NcclLink::make_unique_id() { GLVQ_FAIL("this glvq was built without NCCL; use transport: mpi"); }
std::unique_ptr<NcclLink> NcclLink::create(const std::string&, int, int, int) {
  GLVQ_FAIL("this glvq was built without NCCL; use transport: mpi");
}
void NcclLink::send(const float*, int64_t, int) { GLVQ_FAIL("built without NCCL"); }
void NcclLink::recv(float*, int64_t, int) { GLVQ_FAIL("built without NCCL"); }

}  // namespace glvq
#endif
