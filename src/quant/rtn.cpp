#include "quant/rtn.h"

#include "common/error.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

namespace glvq {

int grid_bits(double bits, const std::string& method) {
  GLVQ_USAGE_CHECK(std::isfinite(bits) && bits == std::round(bits) && bits >= 1 && bits <= 8,
                   "quant.bits = {} but {} stores integer bit widths: set quant.bits to an integer 1..8 "
                   "(fractional bits per weight need quant.method = glvq)",
                   bits, method);
  return static_cast<int>(bits);
}

int64_t grid_group_size(int group_size, int64_t out, int64_t in, const std::string& name,
                        const std::string& method) {
  GLVQ_USAGE_CHECK(group_size >= 0, "quant.{}.group_size = {} must be >= 0 (0 = whole rows)", method, group_size);
  GLVQ_CHECK(in > 0, "layer {} has shape [out, in] = [{}, {}]: {} needs at least one input column", name, out, in,
             method);
  // Any width: the last group of a row keeps the in % gs columns that are left.
  return group_size == 0 ? in : group_size;
}

int64_t grid_groups(int64_t in, int64_t group_size) { return (in + group_size - 1) / group_size; }

namespace {

/// The grid of WG [out, groups, width] (float): scale and zero [out, groups].
IntGrid grid_of_groups(const at::Tensor& Wg, int bits) {
  const double maxq = std::ldexp(1.0, bits) - 1;
  at::Tensor xmin = at::clamp_max(Wg.amin({2}), 0.0);
  at::Tensor xmax = at::clamp_min(Wg.amax({2}), 0.0);
  at::Tensor flat = at::logical_and(xmin == 0, xmax == 0);
  xmin.masked_fill_(flat, -1.0);
  xmax.masked_fill_(flat, 1.0);
  // A tensor divisor keeps the division IEEE on CUDA too (a scalar one becomes a
  // multiplication by its reciprocal there), so both devices give the same grid.
  // The smallest fp16 subnormal keeps a tiny group's scale from rounding to 0.
  at::Tensor scale = ((xmax - xmin) / at::full_like(xmax, maxq)).clamp_min(std::ldexp(1.0, -24)).to(at::kHalf).to(at::kFloat);
  GLVQ_CHECK(at::isfinite(scale).all().item<bool>(),
             "a weight group spans more than fp16 can hold as a {}-bit grid step (|w| > ~65504 * {}); "
             "the layer's weights are not usable for rtn/gptq",
             bits, maxq);
  at::Tensor zero = at::clamp(at::round(-xmin / scale), 0.0, maxq);
  return {scale, zero};
}

}  // namespace

IntGrid grid_find_params(const at::Tensor& W, int bits, int64_t group_size) {
  GLVQ_ASSERT(W.dim() == 2 && group_size > 0 && W.size(1) > 0);
  const int64_t out = W.size(0), in = W.size(1), full = in / group_size, tail = in - full * group_size;
  const at::Tensor Wf = W.to(at::kFloat);
  // Full groups as one batch (what every layer with gs | in computes), then the narrower last group.
  IntGrid g;
  if (full > 0) g = grid_of_groups(Wf.narrow(1, 0, full * group_size).reshape({out, full, group_size}), bits);
  if (tail > 0) {
    IntGrid t = grid_of_groups(Wf.narrow(1, full * group_size, tail).reshape({out, 1, tail}), bits);
    g = full > 0 ? IntGrid{at::cat({g.scale, t.scale}, 1), at::cat({g.zero, t.zero}, 1)} : t;
  }
  return {g.scale.contiguous(), g.zero.contiguous()};
}

at::Tensor grid_quantize_cols(const at::Tensor& W, const at::Tensor& scale, const at::Tensor& zero, int bits) {
  const double maxq = std::ldexp(1.0, bits) - 1;
  return at::clamp(at::round(W / scale.unsqueeze(-1)) + zero.unsqueeze(-1), 0.0, maxq);
}

at::Tensor grid_quantize(const at::Tensor& W, const IntGrid& grid, int bits, int64_t group_size) {
  const int64_t out = W.size(0), in = W.size(1), full = in / group_size, tail = in - full * group_size;
  const at::Tensor Wf = W.to(at::kFloat);
  std::vector<at::Tensor> parts;
  if (full > 0)
    parts.push_back(grid_quantize_cols(Wf.narrow(1, 0, full * group_size).reshape({out, full, group_size}),
                                       grid.scale.narrow(1, 0, full), grid.zero.narrow(1, 0, full), bits)
                        .reshape({out, full * group_size}));
  if (tail > 0)
    parts.push_back(grid_quantize_cols(Wf.narrow(1, full * group_size, tail), grid.scale.select(1, full),
                                       grid.zero.select(1, full), bits));
  return (parts.size() == 1 ? parts[0] : at::cat(parts, 1)).to(at::kByte).contiguous();
}

at::Tensor grid_pack_codes(const at::Tensor& q, int bits) {
  GLVQ_ASSERT(q.dim() == 2 && q.scalar_type() == at::kByte && bits >= 1 && bits <= 8);
  at::Tensor qc = q.to(at::kCPU).contiguous();
  const int64_t out = qc.size(0), in = qc.size(1);
  const int64_t row_bytes = (in * bits + 7) / 8;
  at::Tensor codes = at::zeros({out, row_bytes}, at::TensorOptions().dtype(at::kByte));
  const uint8_t* src = qc.data_ptr<uint8_t>();
  uint8_t* dst = codes.data_ptr<uint8_t>();
  at::parallel_for(0, out, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* qr = src + r * in;
      uint8_t* cr = dst + r * row_bytes;
      for (int64_t k = 0; k < in; ++k) {
        const uint32_t v = qr[k];
        const int64_t bit = k * bits;
        const int sh = static_cast<int>(bit & 7);
        cr[bit >> 3] |= static_cast<uint8_t>(v << sh);
        if (sh + bits > 8) cr[(bit >> 3) + 1] |= static_cast<uint8_t>(v >> (8 - sh));
      }
    }
  });
  return codes;
}

at::Tensor grid_unpack_codes(const at::Tensor& codes, int64_t out, int64_t in, int bits) {
  const int64_t row_bytes = (in * bits + 7) / 8;
  GLVQ_CHECK(codes.scalar_type() == at::kByte && codes.dim() == 2 && codes.size(0) == out &&
                 codes.size(1) == row_bytes,
             "\"codes\" must be uint8 [{}, {}] for a [{}, {}] layer at {} bits, got {} {}", out, row_bytes, out,
             in, bits, c10::toString(codes.scalar_type()), shape_str(codes));
  at::Tensor cc = codes.to(at::kCPU).contiguous();
  at::Tensor q = at::empty({out, in}, at::TensorOptions().dtype(at::kByte));
  const uint8_t* src = cc.data_ptr<uint8_t>();
  uint8_t* dst = q.data_ptr<uint8_t>();
  const uint32_t mask = (1u << bits) - 1;
  at::parallel_for(0, out, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* cr = src + r * row_bytes;
      uint8_t* qr = dst + r * in;
      for (int64_t k = 0; k < in; ++k) {
        const int64_t bit = k * bits;
        const int sh = static_cast<int>(bit & 7);
        uint32_t v = static_cast<uint32_t>(cr[bit >> 3]) >> sh;
        if (sh + bits > 8) v |= static_cast<uint32_t>(cr[(bit >> 3) + 1]) << (8 - sh);
        qr[k] = static_cast<uint8_t>(v & mask);
      }
    }
  });
  return q;
}

QuantizedLinear grid_make_layer(const std::string& method, const at::Tensor& q, const IntGrid& grid,
                                int bits, int64_t group_size) {
  QuantizedLinear L;
  L.method = method;
  L.out = q.size(0);
  L.in = q.size(1);
  L.arrays["codes"] = grid_pack_codes(q, bits);
  L.arrays["scale"] = grid.scale.to(at::kCPU).to(at::kHalf).contiguous();
  L.arrays["zero"] = grid.zero.to(at::kCPU).to(at::kHalf).contiguous();
  L.attrs["bits"] = bits;
  L.attrs["group_size"] = static_cast<double>(group_size);
  return L;
}

namespace {
double attr_of(const QuantizedLinear& q, const std::string& key) {
  auto it = q.attrs.find(key);
  GLVQ_CHECK(it != q.attrs.end(), "{} layer [{}, {}] lacks the attribute \"{}\"; the checkpoint is incomplete",
             q.method, q.out, q.in, key);
  return it->second;
}
const at::Tensor& array_of(const QuantizedLinear& q, const std::string& key) {
  auto it = q.arrays.find(key);
  GLVQ_CHECK(it != q.arrays.end(), "{} layer [{}, {}] lacks the array \"{}\"; the checkpoint is incomplete",
             q.method, q.out, q.in, key);
  return it->second;
}
}  // namespace

at::Tensor grid_dequantize(const QuantizedLinear& q) {
  const double bits_d = attr_of(q, "bits"), gs_d = attr_of(q, "group_size");
  const int bits = static_cast<int>(bits_d);
  const int64_t gs = static_cast<int64_t>(gs_d);
  GLVQ_CHECK(bits == bits_d && bits >= 1 && bits <= 8 && gs == gs_d && gs > 0 && q.in > 0 && q.out > 0,
             "{} layer [{}, {}] has bits = {} and group_size = {}: need an integer 1..8 and a positive group size",
             q.method, q.out, q.in, bits_d, gs_d);
  const int64_t groups = grid_groups(q.in, gs);
  const at::Tensor scale = array_of(q, "scale");
  const at::Tensor zero = array_of(q, "zero");
  for (const at::Tensor* t : {&scale, &zero})
    GLVQ_CHECK(t->dim() == 2 && t->size(0) == q.out && t->size(1) == groups,
               "{} layer [{}, {}]: scale/zero must be [{}, {}], got {}", q.method, q.out, q.in, q.out, groups,
               shape_str(*t));
  at::Tensor qf = grid_unpack_codes(array_of(q, "codes"), q.out, q.in, bits).to(at::kFloat);
  at::Tensor s = scale.to(at::kCPU).to(at::kFloat);
  at::Tensor z = zero.to(at::kCPU).to(at::kFloat);
  // Column j belongs to group j / gs (the last group may be narrower).
  if (q.in % gs == 0) {
    qf = qf.reshape({q.out, groups, gs});
    return ((qf - z.unsqueeze(2)) * s.unsqueeze(2)).reshape({q.out, q.in});
  }
  const at::Tensor col_group =
      at::arange(groups, at::TensorOptions().dtype(at::kLong)).repeat_interleave(gs).narrow(0, 0, q.in);
  return (qf - z.index_select(1, col_group)) * s.index_select(1, col_group);
}

QuantizedLinear rtn_quantize_weight(const at::Tensor& W, int bits, int64_t group_size) {
  at::Tensor Wf = W.to(at::kFloat).contiguous();
  IntGrid grid = grid_find_params(Wf, bits, group_size);
  at::Tensor q = grid_quantize(Wf, grid, bits, group_size);
  return grid_make_layer("rtn", q, grid, bits, group_size);
}

namespace {

class RtnQuantizer : public Quantizer {
 public:
  explicit RtnQuantizer(const QuantConfig& qc) : bits_(grid_bits(qc.bits, "rtn")), group_size_(qc.rtn.group_size) {
    GLVQ_USAGE_CHECK(group_size_ >= 0, "quant.rtn.group_size = {} must be >= 0 (0 = whole rows)", group_size_);
  }

  QuantizedLinear quantize(const at::Tensor& W, const at::Tensor& H, const std::string& name) override {
    const auto t0 = std::chrono::steady_clock::now();
    check_layer_inputs(W, H, name);
    const int64_t gs = grid_group_size(group_size_, W.size(0), W.size(1), name, "rtn");
    QuantizedLinear L = rtn_quantize_weight(W, bits_, gs);
    L.loss = layer_loss(W, grid_dequantize(L), H);
    L.loss_init = L.loss;
    L.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return L;
  }

 private:
  int bits_;
  int group_size_;
};

}  // namespace

std::unique_ptr<Quantizer> make_rtn_quantizer(const QuantConfig& qc) { return std::make_unique<RtnQuantizer>(qc); }

}  // namespace glvq
