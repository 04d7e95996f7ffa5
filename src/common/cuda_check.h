#pragma once
/// CUDA_CHECK(call): throws glvq::Error naming the call, CUDA's error and file:line
/// when a CUDA runtime call (or a kernel launcher returning cudaError_t) fails.
/// Host code only; kernels/ launchers return cudaError_t and leave throwing to callers.
#include <cuda_runtime_api.h>

#include "common/error.h"

#define CUDA_CHECK(call)                                                                              \
  do {                                                                                                \
    const cudaError_t glvq_cuda_err_ = (call);                                                        \
    if (glvq_cuda_err_ != cudaSuccess)                                                                \
      throw ::glvq::Error(fmt::format("CUDA call `{}` failed: {} ({}); check that the GPU is visible " \
                                      "(nvidia-smi), has free memory and that the arguments fit the " \
                                      "kernel's documented limits",                                   \
                                      #call, cudaGetErrorString(glvq_cuda_err_),                      \
                                      cudaGetErrorName(glvq_cuda_err_)),                              \
                          __FILE__, __LINE__);                                                        \
  } while (0)

/// Checks the last launch (cudaGetLastError) after a raw <<<>>> launch.
#define CUDA_CHECK_LAST() CUDA_CHECK(cudaGetLastError())
