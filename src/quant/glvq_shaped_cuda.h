#pragma once
/// The shaped code's layer encode on a CUDA device: glvq_shaped_encode_layer's
/// contract (quant/glvq_shaped_ops.h) for device tensors. Each group's vectors run
/// through kernels/glvq_shaped.cu in panels of up to 128 columns (the LDLQ
/// feedback inside a panel runs in the kernel, between panels and groups as
/// GEMMs); G^-1 and the metrics M_p = G^T D_p G are formed on the host exactly as
/// the CPU reference forms them, so without feedback the codes are bit-identical.
#include <ATen/ATen.h>

#include "quant/glvq_shaped_ops.h"

namespace glvq {

/// True when this build has the kernels (GLVQ_WITH_CUDA).
bool glvq_shaped_cuda_built();

/// WP, F_FULL and D on one CUDA device (G, scale, bits anywhere); the result lives there.
GlvqShapedCodes glvq_shaped_encode_layer_cuda(const at::Tensor& Wp, int64_t gs, const GlvqShapedParams& p,
                                              const at::Tensor& F_full, bool inter, const at::Tensor& D,
                                              int candidates);

}  // namespace glvq
