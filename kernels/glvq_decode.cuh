#pragma once
/// GLVQ decode on the GPU: codes -> W_hat [out, in] (row-major, row stride ldw elements).
/// float output is bit-identical with glvq_decode_ref; fp16/bf16 outputs are within 1 ulp
/// of the reference rounded to that type (they use a faster inverse companding).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "glvq_device_params.h"
#include "quant/glvq_codec.h"

namespace glvq {

cudaError_t glvq_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, float* W,
                               int64_t ldw, cudaStream_t stream);
cudaError_t glvq_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, __half* W,
                               int64_t ldw, cudaStream_t stream);
cudaError_t glvq_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                               __nv_bfloat16* W, int64_t ldw, cudaStream_t stream);

}  // namespace glvq
