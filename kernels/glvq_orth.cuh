#pragma once
/// GLVQ's incoherence transform T = (C_m (x) H_p) D on the GPU (quant/glvq_hadamard.h is
/// the definition; glvq_orth_apply / glvq_orth_apply_t the CPU reference), applied to
/// activations: the fused decode-GEMV multiplies by the stored W' = T_out W T_in^T, so
/// y = W x = T_out^T (W' (T_in x)).
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace glvq {

/// Largest n the kernel takes on the current device (a row lives in shared memory as float).
int64_t glvq_orth_max_n();

/// Y[r] = T X[r] (transpose false) or T^T X[r] (transpose true) for rows r < ROWS.
/// X, Y: fp16, row-major with row strides ldx, ldy, distinct buffers. n = m * p with p a power of two and m odd (p = the largest
/// power of two dividing n). SIGNS: float [n] of +-1. C: float [m * m], the orthonormal
/// DCT-II matrix row-major (null when m == 1). All pointers device memory.
cudaError_t glvq_orth_launch(const __half* X, int64_t ldx, __half* Y, int64_t ldy, int rows, int64_t n, int64_t m,
                             const float* signs, const float* C, bool transpose, cudaStream_t stream);

}  // namespace glvq
