#pragma once
/// GPU memory use of this rank's device for report.json. LibTorch's caching
/// allocator keeps what it reserved, so device memory in use sampled after the
/// pipeline steps and blocks approximates the peak reserved by the stage
/// (plus the CUDA context). A CPU-only build reports 0.
#include <cstddef>

namespace glvq {

/// Samples device memory in use (total - free, as cudaMemGetInfo reports it
/// for the current device) and keeps the maximum seen.
void gpu_memory_sample();
/// The maximum gpu_memory_sample() saw, in bytes.
size_t gpu_memory_peak_bytes();

}  // namespace glvq
