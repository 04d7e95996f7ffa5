#pragma once
/// What the CUDA decoder keeps besides its weights (compiled with GLVQ_WITH_TORCH_CUDA only).
#include "gen/cuda/gen_cuda.h"
#include "glvq_gemv.cuh"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>

#include <map>
#include <memory>
#include <tuple>

namespace glvq {

/// Scratch of the fused GEMV for one layer shape: layers of one shape run one after
/// another on one stream, so they share it (glvq_gemv.cuh: every launch leaves it clean).
struct GemvWorkspace {
  at::Tensor buf;
  GlvqGemvWorkspace ws;
};

/// The DCT factor of the incoherence transform of size n = m * 2^k.
struct OrthTable {
  int64_t m = 1;
  at::Tensor C;  ///< float [m*m] on the device (m > 1)
};

struct Decoder::CudaState {
  explicit CudaState(bool graph_enabled) : stream(c10::cuda::getStreamFromPool()), graph_enabled(graph_enabled) {}
  at::Device device() const { return at::Device(at::kCUDA, 0); }
  std::shared_ptr<GemvWorkspace> workspace(const GlvqLayout& L);

  c10::cuda::CUDAStream stream;  ///< every kernel of the decoder runs here (capture needs a non-default stream)
  bool graph_enabled = true;
  std::map<std::tuple<int64_t, int64_t, int, int>, std::shared_ptr<GemvWorkspace>> ws;  // out, in, gs, d
  std::map<int64_t, OrthTable> orth;
  // the captured decode step: its inputs and output live at fixed addresses
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  at::Tensor tok, qpos, logits;
};

/// "" when Q can run the fused path (L filled), else why not.
std::string cuda_fused_unsupported(const QuantizedLinear& q, GlvqLayout* L);

}  // namespace glvq
