#include "nn/gpu_memory.h"

#include <algorithm>

#ifdef GLVQ_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace glvq {
namespace {
size_t g_peak = 0;
}

void gpu_memory_sample() {
#ifdef GLVQ_WITH_CUDA
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) g_peak = std::max(g_peak, total_b - free_b);
  else cudaGetLastError();  // no device (CPU run): clear the sticky error, report nothing
#endif
}

size_t gpu_memory_peak_bytes() { return g_peak; }

}  // namespace glvq
