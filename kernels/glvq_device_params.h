#pragma once
/// Device-side views of a GLVQ layer, shared by the launchers in kernels/*.cuh.
/// Host-includable (no CUDA headers).
#include <cstdint>

namespace glvq {

/// Per-group parameters in device memory, sized as GlvqGroupParams (quant/glvq_codec.h):
/// bits[groups], scale[groups], mu[groups], G[groups*d*d], Ginv[groups*d*d] (row-major),
/// plus group_offsets[groups + 1] = glvq_group_offsets() (bytes into the codes array).
struct GlvqDeviceParams {
  const uint8_t* bits = nullptr;
  const float* scale = nullptr;
  const float* mu = nullptr;
  const float* G = nullptr;
  const float* Ginv = nullptr;
  const int64_t* group_offsets = nullptr;
};

}  // namespace glvq
