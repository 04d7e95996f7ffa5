#pragma once
/// Bridges mapped checkpoint tensors and LibTorch.
#include "model/safetensors.h"

#include <ATen/ATen.h>

namespace glvq {

/// A float32 copy of a mapped tensor on DEVICE. Rejects dtypes other than
/// F32/F16/BF16 and non-finite values (naming the tensor): NaN/Inf weights
/// cannot be quantized meaningfully.
at::Tensor to_float_tensor(const TensorView& v, const at::Device& device = at::kCPU);

/// Checks that T has the given shape; the error names the tensor and both shapes.
void check_shape(const TensorView& v, std::vector<int64_t> expected);

at::ScalarType scalar_type_of(DType t);
/// Throws for scalar types glvq does not store (complex, uint16, ...).
DType dtype_of(at::ScalarType t);

}  // namespace glvq
