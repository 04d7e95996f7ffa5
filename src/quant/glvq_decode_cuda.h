#pragma once
/// LibTorch wrapper of the CUDA GLVQ decode kernel (kernels/glvq_decode.cu):
/// checks and moves the per-group parameters, launches on the current device's
/// legacy default stream (LibTorch's default), returns W_hat fp32 [out, in].
#include <ATen/ATen.h>

#include <vector>

#include "quant/glvq_codec.h"

namespace glvq {

/// True when this build has the kernels (GLVQ_WITH_CUDA).
bool glvq_cuda_decode_built();

/// BITS uint8 [groups], SCALE / MU fp32 [groups], G / GINV fp32 [groups, d, d],
/// CODES uint8 (glvq_codec layout) and OFFSETS = glvq_group_offsets(L, bits):
/// host or device tensors. Bit-identical with glvq_decode_ref.
at::Tensor glvq_decode_cuda(const GlvqLayout& L, const at::Tensor& bits, const at::Tensor& scale, const at::Tensor& mu,
                            const at::Tensor& G, const at::Tensor& Ginv, const std::vector<int64_t>& offsets,
                            const at::Tensor& codes, const at::Device& device);

}  // namespace glvq
