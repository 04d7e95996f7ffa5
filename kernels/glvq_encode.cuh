#pragma once
/// GLVQ encode on the GPU: bit-exact with glvq_encode_ref (quant/glvq_codec.h).
#include <cuda_runtime_api.h>

#include <cstdint>

#include "glvq_device_params.h"
#include "quant/glvq_codec.h"

namespace glvq {

/// Encodes W (device, float, row-major [out, in] with row stride ldw elements) into
/// `codes` (device, p.group_offsets[groups] bytes). Returns the launch's error.
cudaError_t glvq_encode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const float* W, int64_t ldw,
                               uint8_t* codes, cudaStream_t stream);

}  // namespace glvq
