#include "quant/quantizer.h"

#include "common/error.h"
#include "quant/glvq.h"
#include "quant/gptq.h"
#include "quant/rtn.h"

namespace glvq {

BitsBreakdown& BitsBreakdown::operator+=(const BitsBreakdown& o) {
  const int64_t w = weights + o.weights;
  if (w == 0) return *this;
  const double a = static_cast<double>(weights) / w, b = static_cast<double>(o.weights) / w;
  codes = a * codes + b * o.codes;
  lattice = a * lattice + b * o.lattice;
  companding = a * companding + b * o.companding;
  scales = a * scales + b * o.scales;
  bitmap = a * bitmap + b * o.bitmap;
  transform = a * transform + b * o.transform;
  other = a * other + b * o.other;
  weights = w;
  return *this;
}

std::string bits_role(const std::string& name) {
  auto starts = [&](const char* p) { return name.rfind(p, 0) == 0; };
  if (starts("codes")) return "codes";
  if (starts("G")) return "lattice";
  if (starts("mu")) return "companding";
  if (starts("scale") || starts("zero")) return "scales";
  if (starts("bits")) return "bitmap";
  if (starts("signs") || starts("perm")) return "transform";
  return "other";
}

BitsBreakdown count_bits(const QuantizedLinear& q) {
  GLVQ_CHECK(q.out > 0 && q.in > 0, "count_bits: the {} layer has shape [{}, {}]", q.method, q.out, q.in);
  BitsBreakdown b;
  b.weights = q.out * q.in;
  const double n = static_cast<double>(b.weights);
  for (const auto& [name, t] : q.arrays) {
    const double bits = static_cast<double>(t.numel()) * static_cast<double>(t.element_size()) * 8.0 / n;
    const std::string role = bits_role(name);
    if (role == "codes") b.codes += bits;
    else if (role == "lattice") b.lattice += bits;
    else if (role == "companding") b.companding += bits;
    else if (role == "scales") b.scales += bits;
    else if (role == "bitmap") b.bitmap += bits;
    else if (role == "transform") b.transform += bits;
    else b.other += bits;
  }
  return b;
}

at::Tensor dequantize(const QuantizedLinear& q) {
  if (q.method == "rtn" || q.method == "gptq") return grid_dequantize(q);
  if (q.method == "glvq") return glvq_dequantize(q);
  GLVQ_FAIL("cannot dequantize a layer stored with method \"{}\" (known: rtn, gptq, glvq)", q.method);
}

at::Tensor dequantize_on(const QuantizedLinear& q, const at::Device& device) {
  if (q.method == "glvq") return glvq_dequantize_on(q, device);
  return dequantize(q).to(device);
}

double layer_loss(const at::Tensor& W, const at::Tensor& W_hat, const at::Tensor& H) {
  GLVQ_CHECK(W.dim() == 2 && W_hat.sizes() == W.sizes() && H.dim() == 2 && H.size(0) == W.size(1) &&
                 H.size(1) == W.size(1),
             "layer_loss: W {}, W_hat {} and H {} do not match (need [out, in], [out, in], [in, in])",
             shape_str(W), shape_str(W_hat), shape_str(H));
  const at::Device dev = W.device();
  at::Tensor E = W.to(at::kDouble) - W_hat.to(dev, at::kDouble);
  return (E.mm(H.to(dev, at::kDouble)) * E).sum().item<double>();
}

void check_layer_inputs(const at::Tensor& W, const at::Tensor& H, const std::string& name) {
  GLVQ_CHECK(W.dim() == 2 && W.size(0) > 0 && W.size(1) > 0 && at::isFloatingType(W.scalar_type()),
             "layer {}: the weight must be a non-empty floating [out, in] matrix, got {} {}", name,
             c10::toString(W.scalar_type()), shape_str(W));
  GLVQ_CHECK(H.dim() == 2 && H.size(0) == W.size(1) && H.size(1) == W.size(1) && at::isFloatingType(H.scalar_type()),
             "layer {}: H must be a floating [in, in] = [{}, {}] matrix for the weight {}, got {} {}", name,
             W.size(1), W.size(1), shape_str(W), c10::toString(H.scalar_type()), shape_str(H));
  GLVQ_CHECK(at::isfinite(W).all().item<bool>(), "layer {}: the weight {} holds NaN or Inf values", name,
             shape_str(W));
  GLVQ_CHECK(at::isfinite(H).all().item<bool>(),
             "layer {}: the input statistics H {} hold NaN or Inf values (an overflow in the calibration "
             "forward?); re-collect them",
             name, shape_str(H));
}

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

std::unique_ptr<Quantizer> make_quantizer(const QuantConfig& qc, uint64_t seed) {
  if (qc.method == "rtn") return make_rtn_quantizer(qc);
  if (qc.method == "gptq") return make_gptq_quantizer(qc);
  if (qc.method == "glvq") return make_glvq_quantizer(qc, seed);
  GLVQ_USAGE_CHECK(qc.method != "none",
                   "quant.method = none: there is no quantizer to build; set quant.method to rtn, gptq or glvq");
  throw UsageError(fmt::format("quant.method = \"{}\" is not a quantizer (known: rtn, gptq, glvq)", qc.method),
                   __FILE__, __LINE__);
}

}  // namespace glvq
