#pragma once
/// One interface for every weight quantizer (RTN, GPTQ, GLVQ): each turns a
/// linear layer's weight and its input second moment H into the arrays that
/// the checkpoint stores, and can rebuild the weight from those arrays alone.
#include "config/config.h"

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>

namespace glvq {

/// What is stored for one quantized linear layer. Every array is counted in
/// bits_per_weight at its stored size, so the accounting is what is on disk.
/// Array names carry their role (see bits_role): "codes*", "G*", "mu*",
/// "scale*"/"zero*", "bits*", "signs*"/"perm*".
struct QuantizedLinear {
  std::string method;                        ///< "rtn" | "gptq" | "glvq"
  int64_t out = 0, in = 0;                   ///< weight shape [out, in]
  std::map<std::string, at::Tensor> arrays;  ///< contiguous CPU tensors, stored dtypes
  std::map<std::string, double> attrs;       ///< format parameters (dim, group_size, ...)
  double loss = 0;       ///< tr(E H E^T) of the stored result, E = W - W_hat
  double loss_init = 0;  ///< the same for the method's starting point (RTN for GPTQ, Cholesky init for GLVQ)
  double seconds = 0;    ///< wall time of quantize()
};

/// Bits of storage per weight, by role; total() is what report.json calls bits_per_weight.
struct BitsBreakdown {
  double codes = 0, lattice = 0, companding = 0, scales = 0, bitmap = 0, transform = 0, other = 0;
  int64_t weights = 0;  ///< out * in
  double total() const { return codes + lattice + companding + scales + bitmap + transform + other; }
  BitsBreakdown& operator+=(const BitsBreakdown& o);  ///< weighted by weights
};

/// Role of an array by its name prefix: codes, lattice, companding, scales, bitmap, transform, other.
std::string bits_role(const std::string& array_name);
BitsBreakdown count_bits(const QuantizedLinear& q);

/// Rebuilds the fp32 weight [out, in] from the stored arrays alone.
at::Tensor dequantize(const QuantizedLinear& q);
/// The same on DEVICE: GLVQ layers are decoded there by the CUDA kernel when
/// DEVICE is a GPU (bit-identical with the CPU reference), others move there.
at::Tensor dequantize_on(const QuantizedLinear& q, const at::Device& device);

/// tr(E H E^T) in double, E = W - W_hat (both [out, in], H [in, in]).
double layer_loss(const at::Tensor& W, const at::Tensor& W_hat, const at::Tensor& H);

class Quantizer {
 public:
  virtual ~Quantizer() = default;
  /// W: fp32 [out, in] (CPU or CUDA); H: fp32 [in, in] = sum over calibration
  /// tokens of x x^T (already averaged by the caller: H / n_tokens).
  /// NAME identifies the layer in messages and seeds per-layer randomness.
  virtual QuantizedLinear quantize(const at::Tensor& W, const at::Tensor& H, const std::string& name) = 0;
};

/// Checks what every quantize() receives: W float [out, in], H float [in, in],
/// both finite; throws naming the layer NAME and the shapes.
void check_layer_inputs(const at::Tensor& W, const at::Tensor& H, const std::string& name);

/// "[a, b, c]" for messages.
std::string shape_str(const at::Tensor& t);

/// Builds the quantizer QC.method names; SEED makes it deterministic.
std::unique_ptr<Quantizer> make_quantizer(const QuantConfig& qc, uint64_t seed);

}  // namespace glvq
