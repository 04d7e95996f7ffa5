#include "dist/comm.h"

#include "common/error.h"
#include "common/log.h"
#include "common/preempt.h"
#include "dist/nccl_link.h"
#include "dist/transfer_watchdog.h"

#include <mpi.h>

#include <chrono>

#define MPI_CHECK(call)                                                           \
  do {                                                                            \
    int rc_ = (call);                                                             \
    if (rc_ != MPI_SUCCESS) {                                                     \
      char msg_[MPI_MAX_ERROR_STRING];                                            \
      int len_ = 0;                                                               \
      MPI_Error_string(rc_, msg_, &len_);                                         \
      GLVQ_FAIL("MPI call {} failed: {}; another rank probably died, see its log", \
                #call, std::string(msg_, len_));                                  \
    }                                                                             \
  } while (0)

namespace glvq {
namespace {
Comm* g_comm = nullptr;

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Comm& Comm::init(int* argc, char*** argv) {
  GLVQ_ASSERT(g_comm == nullptr);
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  g_comm = new Comm();
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_comm->rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &g_comm->size_);
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_comm->rank_, MPI_INFO_NULL, &node));
  MPI_Comm_rank(node, &g_comm->local_rank_);
  MPI_Comm_size(node, &g_comm->local_size_);
  MPI_Comm_free(&node);
  set_error_rank(g_comm->rank_);
  return *g_comm;
}

Comm::Comm() = default;
Comm::~Comm() = default;

Comm& Comm::get() {
  GLVQ_ASSERT(g_comm != nullptr);
  return *g_comm;
}

void Comm::finalize() {
  nccl_.reset();  // NCCL communicators go before MPI
  if (!finalized_) MPI_Finalize();
  finalized_ = true;
}

// Every blocking call below is a PreemptibleWait: a preemption signal that finds
// this rank waiting for another ends it at once with exit 3 (common/preempt.h).

void Comm::barrier() {
  PreemptibleWait wait("a barrier with the other ranks");
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

void Comm::bcast_string(std::string& s, int root) {
  PreemptibleWait wait("a broadcast from another rank");
  long n = static_cast<long>(s.size());
  MPI_CHECK(MPI_Bcast(&n, 1, MPI_LONG, root, MPI_COMM_WORLD));
  s.resize(n);
  if (n > 0) MPI_CHECK(MPI_Bcast(s.data(), static_cast<int>(n), MPI_CHAR, root, MPI_COMM_WORLD));
}

void Comm::bcast_ints(std::vector<int32_t>& v, int root) {
  PreemptibleWait wait("a broadcast from another rank");
  long n = static_cast<long>(v.size());
  MPI_CHECK(MPI_Bcast(&n, 1, MPI_LONG, root, MPI_COMM_WORLD));
  v.resize(n);
  if (n > 0) MPI_CHECK(MPI_Bcast(v.data(), static_cast<int>(n), MPI_INT32_T, root, MPI_COMM_WORLD));
}

double Comm::allreduce_sum(double x) {
  PreemptibleWait wait("a reduction over the ranks");
  double y = 0;
  MPI_CHECK(MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  return y;
}

double Comm::allreduce_max(double x) {
  PreemptibleWait wait("a reduction over the ranks");
  double y = 0;
  MPI_CHECK(MPI_Allreduce(&x, &y, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
  return y;
}

std::vector<std::string> Comm::gather_strings(const std::string& s, int root) {
  PreemptibleWait wait("a gather of the ranks' reports");
  int n = static_cast<int>(s.size());
  std::vector<int> sizes(size_), displs(size_);
  MPI_CHECK(MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, root, MPI_COMM_WORLD));
  std::string all;
  if (rank_ == root) {
    long total = 0;
    for (int r = 0; r < size_; ++r) displs[r] = static_cast<int>(total), total += sizes[r];
    all.resize(total);
  }
  MPI_CHECK(MPI_Gatherv(s.data(), n, MPI_CHAR, all.data(), sizes.data(), displs.data(), MPI_CHAR, root,
                        MPI_COMM_WORLD));
  std::vector<std::string> out;
  if (rank_ == root)
    for (int r = 0; r < size_; ++r) out.push_back(all.substr(displs[r], sizes[r]));
  return out;
}

std::string Comm::select_transport(const std::string& transport, const at::Device& device) {
  if (size_ == 1) return "none (a single rank sends nothing)";
  std::string why;
  if (!nccl_built()) why = "this glvq was built without NCCL";
  else if (!device.is_cuda()) why = "tensors are on the CPU";
  else if (transport == "mpi") why = "transport: mpi";
  int gpus = 0;
  if (why.empty()) {
    gpus = static_cast<int>(at::getNumGPUs());
    if (local_size_ > gpus) why = fmt::format("{} ranks share {} GPU(s) on a node, which NCCL refuses", local_size_, gpus);
  }
  // Every rank must take the same path: one rank's reason is everyone's.
  const bool all_ok = allreduce_max(why.empty() ? 0.0 : 1.0) == 0.0;
  if (!all_ok) {
    if (why.empty()) why = "another rank cannot use NCCL (see its log)";
    GLVQ_USAGE_CHECK(transport != "nccl", "transport: nccl was asked for but {}; use transport: auto or mpi", why);
    return "mpi (" + why + ")";
  }
  std::string id = rank_ == 0 ? NcclLink::make_unique_id() : std::string();
  bcast_string(id);
  nccl_ = NcclLink::create(id, rank_, size_, device.index());
  return fmt::format("nccl (GPU {} of {} on this node)", device.index(), gpus);
}

void Comm::send_tensor(const at::Tensor& t, int dst, int tag) {
  const bool gpu = nccl_ && t.is_cuda();
  at::Tensor h = gpu ? t.to(at::kFloat).contiguous() : t.to(at::kCPU, at::kFloat).contiguous();
  std::vector<int64_t> header = {h.dim()};
  for (int64_t d : h.sizes()) header.push_back(d);
  GLVQ_ASSERT(header.size() <= 9);
  double t0 = now_s();
  TransferWatch watch(fmt::format("rank {} to take micro-batch {}", dst, tag));
  PreemptibleWait wait("the next rank to take a micro-batch");
  MPI_CHECK(MPI_Send(header.data(), static_cast<int>(header.size()), MPI_INT64_T, dst, tag, MPI_COMM_WORLD));
  const int64_t n = h.numel(), piece = int64_t(1) << 30;
  const float* p = h.data_ptr<float>();
  if (gpu) {
    nccl_->send(p, n, dst);
  } else {
    // Large activations go in pieces below MPI's int count limit.
    for (int64_t off = 0; off < n; off += piece)
      MPI_CHECK(MPI_Send(p + off, static_cast<int>(std::min(piece, n - off)), MPI_FLOAT, dst, tag, MPI_COMM_WORLD));
  }
  const double dt = now_s() - t0;
  wait_s_ += dt;
  send_s_ += dt;
  sends_ += 1;
  bytes_sent_ += double(n) * 4;
}

at::Tensor Comm::recv_tensor(int src, int tag, const at::Device& device) {
  double t0 = now_s();
  TransferWatch watch(fmt::format("micro-batch {} from rank {}", tag, src));
  PreemptibleWait wait("a micro-batch from the previous rank");
  std::vector<int64_t> header(9);
  MPI_Status st;
  MPI_CHECK(MPI_Recv(header.data(), 9, MPI_INT64_T, src, tag, MPI_COMM_WORLD, &st));
  std::vector<int64_t> shape(header.begin() + 1, header.begin() + 1 + header[0]);
  const bool gpu = nccl_ && device.is_cuda();
  at::Tensor h = at::empty(shape, at::TensorOptions().dtype(at::kFloat).device(gpu ? device : at::Device(at::kCPU)));
  const int64_t n = h.numel(), piece = int64_t(1) << 30;
  float* p = h.data_ptr<float>();
  if (gpu) {
    nccl_->recv(p, n, src);
  } else {
    for (int64_t off = 0; off < n; off += piece)
      MPI_CHECK(MPI_Recv(p + off, static_cast<int>(std::min(piece, n - off)), MPI_FLOAT, src, tag, MPI_COMM_WORLD,
                         &st));
  }
  wait_s_ += now_s() - t0;
  return gpu ? h : h.to(device);
}

void Comm::abort_job(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace glvq
