#pragma once
/// The shaped code (quant/glvq_codebook.h) on the GPU: its decoder (bit-identical
/// with glvq_decode_ref) and its encoder (quant/glvq_shaped_ops.h is the CPU
/// reference), which takes a panel of consecutive vector columns of one group, one warp per
/// row. Each warp encodes its row's vectors left to right with the codec's rule
/// (nearest codeword per 8 coordinates of y = G^-1 t / s, quant/glvq_codebook.h),
/// optionally rescored under the layer metric M_p = G^T D_p G, and feeds each
/// vector's error forward to the rest of the panel (LDLQ). The float operations
/// are the reference's, so without feedback the codes are bit-identical; the
/// feedback sums may round differently from the CPU's BLAS. Host-includable.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "glvq_device_params.h"
#include "quant/glvq_codec.h"

namespace glvq {

struct GlvqShapedPanel {
  int64_t rows = 0;
  int64_t ld = 0;      ///< row stride of T, C, W_hat (floats); codes have ld / 8 per row
  int64_t p0 = 0, p1 = 0;  ///< the panel's columns [p0, p1): whole vectors of one group
  int d = 8;           ///< vector dimension, a multiple of 8, <= 64
  const float* G = nullptr;     ///< device [d, d] row-major (the group's generator)
  const float* Ginv = nullptr;  ///< device [d, d]
  float scale = 1;
  int stages = 1;      ///< residual stages of the group's width (glvq_shaped_stages)
  int book[4] = {2, 0, 0, 0};
  float beta[4] = {1, 0, 0, 0};
  int beam = 1;        ///< glvq_shaped_beam(bits)
  int candidates = 1;  ///< K; rescoring runs when M is given and K > 1
  const double* M = nullptr;  ///< device [(p1 - p0) / d, d, d]: G^T D_p G per vector, or null
  const float* F = nullptr;   ///< device feedback factor (row stride ldF), or null: no feedback
  int64_t ldF = 0;
  float* T = nullptr;       ///< device targets [rows, ld], updated in place inside the panel
  float* C = nullptr;       ///< device unit codewords out [rows, ld]
  float* W_hat = nullptr;   ///< device reconstruction s G c out [rows, ld]
  int64_t* codes = nullptr; ///< device sub-codes out [rows, ld / 8]
};

/// Encodes the panel on STREAM. Returns cudaErrorInvalidValue for a d that is not a
/// multiple of 8 in 8..64, more than 16 candidates, or a panel that is not whole vectors.
cudaError_t glvq_shaped_encode_panel(const GlvqShapedPanel& p, cudaStream_t stream);

/// Decodes a shaped layer (L.code == shaped) into W [out, in] (row stride ldw), one
/// thread per vector: float output is bit-identical with glvq_decode_ref, fp16 / bf16
/// are that value rounded to nearest. glvq_decode_launch forwards shaped layers here.
cudaError_t glvq_shaped_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, float* W,
                                      int64_t ldw, cudaStream_t stream);
cudaError_t glvq_shaped_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                                      __half* W, int64_t ldw, cudaStream_t stream);
cudaError_t glvq_shaped_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                                      __nv_bfloat16* W, int64_t ldw, cudaStream_t stream);

}  // namespace glvq
