#pragma once
/// A quantized linear layer with its codes fixed and its continuous parameters
/// as autograd leaves, so that a loss downstream of its weight can tune them.
///
/// - glvq: per group the generator G [d, d], the scale s and, where the layer
///   was stored with companding (mu > 0), mu. The code coordinates t of every
///   vector are decoded once (glvq_code_coords_ref); the weight is
///   W = T_out^T expand(s G t) T_in (quant/glvq_codec.h, quant/glvq_hadamard.h)
///   in plain ATen operations.
/// - rtn / gptq: the scale [out, groups]; W = scale * (q - zero), q and zero fixed.
///
/// The leaves are fp32 masters in units that let one learning rate fit every
/// layer: G relative to its group's starting RMS, s and mu as logarithms.
/// stored() rounds them to the dtypes the format stores (fp16), so a layer
/// written from it decodes to weight() up to that rounding.
#include "quant/quantizer.h"

#include <ATen/ATen.h>

#include <vector>

namespace glvq {

class TunableLinear {
 public:
  /// Q: a stored layer (method glvq, rtn or gptq); the leaves live on DEVICE.
  TunableLinear(const QuantizedLinear& q, const at::Device& device);
  /// The same with the leaves and the weight in DTYPE (kDouble for gradient checks).
  TunableLinear(const QuantizedLinear& q, const at::Device& device, at::ScalarType dtype);

  /// The fp32 weight [out, in] on the device, differentiable in params().
  at::Tensor weight() const;
  /// The leaves (requires_grad, fp32, on the device).
  const std::vector<at::Tensor>& params() const { return params_; }
  /// Copies of the leaves' values / putting such copies back (best iterate).
  std::vector<at::Tensor> snapshot() const;
  void restore(const std::vector<at::Tensor>& values);
  /// The layer to store: the original arrays with the tuned ones (fp16) in place.
  QuantizedLinear stored() const;

 private:
  QuantizedLinear q_;
  bool glvq_ = false;
  int64_t out_ = 0, in_ = 0;
  // glvq
  int64_t full_ = 0;           ///< groups of group_size columns (the rest: one narrower last group)
  int64_t gs_ = 0, last_cols_ = 0;
  at::Tensor coords_full_;     ///< [full, out * gs/d, d]
  at::Tensor coords_last_;     ///< [out * V_last, d] (undefined when every group is full)
  at::Tensor g_rms_;           ///< [groups, 1, 1]: G = g_rms * Gn
  at::Tensor mu_mask_;         ///< bool [groups]: companding groups (mu > 0)
  bool any_mu_ = false;
  at::Tensor signs_in_, signs_out_;  ///< incoherence (undefined without)
  // rtn / gptq
  at::Tensor qz_;              ///< q - zero, fp32 [out, in]
  at::Tensor col_group_;       ///< long [in]: each column's group (narrower last group only)
  int64_t grid_gs_ = 0;
  std::vector<at::Tensor> params_;  ///< glvq: Gn, log_s, log_mu; grid: log_s
};

}  // namespace glvq
