#include "quant/gptq.h"

#include "common/error.h"
#include "common/preempt.h"
#include "quant/damped_cholesky.h"
#include "quant/rtn.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <vector>

namespace glvq {
namespace {

constexpr int64_t kBlock = 128;  // lazy-batch width of the reference implementation

}  // namespace

QuantizedLinear gptq_quantize_weight(const at::Tensor& W_in, const at::Tensor& H_in, int bits, int64_t group_size,
                                     const GptqConfig& cfg, const std::string& name) {
  const int64_t out = W_in.size(0), in = W_in.size(1);
  const int64_t groups = grid_groups(in, group_size);
  const double maxq = std::ldexp(1.0, bits) - 1;
  const at::Device dev = W_in.device();
  at::Tensor W = W_in.to(at::kFloat).clone().contiguous();
  at::Tensor H = H_in.to(dev, at::kDouble).clone();

  // Dead inputs never fire: their weights are free, so zero them and make H regular.
  at::Tensor dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1.0);
  W.masked_fill_(dead.unsqueeze(0), 0.0);

  IntGrid grid;
  if (cfg.static_groups) {
    grid = grid_find_params(W, bits, group_size);
  } else {
    grid.scale = at::empty({out, groups}, W.options());
    grid.zero = at::empty({out, groups}, W.options());
  }

  // perm[j] = original column quantized j-th.
  std::vector<int64_t> perm(in);
  std::iota(perm.begin(), perm.end(), int64_t{0});
  if (cfg.act_order) {
    at::Tensor dg = H.diagonal().to(at::kCPU).contiguous();
    const double* d = dg.data_ptr<double>();
    std::stable_sort(perm.begin(), perm.end(), [d](int64_t a, int64_t b) { return d[a] > d[b]; });
    at::Tensor p = at::from_blob(perm.data(), {in}, at::TensorOptions().dtype(at::kLong)).to(dev);
    W = W.index_select(1, p).contiguous();
    H = H.index_select(0, p).index_select(1, p);
  }

  at::Tensor Hinv = damped_inverse_cholesky(H, cfg.damp, name, "collect more samples (calib.samples)");
  at::Tensor Q = at::empty({out, in}, W.options());  // integer codes, quantization order
  at::Tensor Err1 = at::empty({out, kBlock}, W.options());

  for (int64_t i1 = 0; i1 < in; i1 += kBlock) {
    throw_if_preempted("the GPTQ column loop");
    const int64_t i2 = std::min(i1 + kBlock, in), count = i2 - i1;
    at::Tensor W1 = W.narrow(1, i1, count);  // updated in place
    at::Tensor Hinv1 = Hinv.narrow(0, i1, count).narrow(1, i1, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = perm[i1 + i], g = col / group_size;
      if (!cfg.static_groups && col % group_size == 0) {
        // Dynamic groups (act_order off, so col == i1 + i): the grid of the group's
        // columns as they stand now, like the reference's find_params call.
        const int64_t width = std::min(group_size, in - col);  // the last group may be narrower
        IntGrid gg = grid_find_params(W.narrow(1, col, width), bits, width);
        grid.scale.select(1, g).copy_(gg.scale.select(1, 0));
        grid.zero.select(1, g).copy_(gg.zero.select(1, 0));
      }
      at::Tensor s = grid.scale.select(1, g), z = grid.zero.select(1, g);
      at::Tensor w = W1.select(1, i);
      at::Tensor q = at::clamp(at::round(w / s) + z, 0.0, maxq);
      Q.select(1, i1 + i).copy_(q);
      at::Tensor err = (w - (q - z) * s) / Hinv1.select(0, i).select(0, i);
      Err1.select(1, i).copy_(err);
      W1.narrow(1, i, count - i).addr_(err, Hinv1.select(0, i).narrow(0, i, count - i), 1, -1);
    }
    if (i2 < in)
      W.narrow(1, i2, in - i2).addmm_(Err1.narrow(1, 0, count), Hinv.narrow(0, i1, count).narrow(1, i2, in - i2), 1,
                                      -1);
  }

  if (cfg.act_order) {
    std::vector<int64_t> inv(in);
    for (int64_t j = 0; j < in; ++j) inv[perm[j]] = j;
    at::Tensor ip = at::from_blob(inv.data(), {in}, at::TensorOptions().dtype(at::kLong)).to(dev);
    Q = Q.index_select(1, ip);
  }
  QuantizedLinear L = grid_make_layer("gptq", Q.to(at::kByte), grid, bits, group_size);
  return L;
}

namespace {

class GptqQuantizer : public Quantizer {
 public:
  explicit GptqQuantizer(const QuantConfig& qc) : bits_(grid_bits(qc.bits, "gptq")), cfg_(qc.gptq) {
    GLVQ_USAGE_CHECK(cfg_.group_size >= 0, "quant.gptq.group_size = {} must be >= 0 (0 = whole rows)",
                     cfg_.group_size);
    GLVQ_USAGE_CHECK(std::isfinite(cfg_.damp) && cfg_.damp >= 0, "quant.gptq.damp = {} must be >= 0", cfg_.damp);
    // Dynamic groups under act-order are formed in permuted order and would need a
    // per-column group index, which the shared RTN/GPTQ format does not store.
    GLVQ_USAGE_CHECK(cfg_.static_groups || !cfg_.act_order,
                     "quant.gptq.act_order = true needs quant.gptq.static_groups = true (the stored format keeps "
                     "groups in the original column order); set static_groups: true or act_order: false");
  }

  QuantizedLinear quantize(const at::Tensor& W, const at::Tensor& H, const std::string& name) override {
    const auto t0 = std::chrono::steady_clock::now();
    check_layer_inputs(W, H, name);
    const int64_t gs = grid_group_size(cfg_.group_size, W.size(0), W.size(1), name, "gptq");
    QuantizedLinear L = gptq_quantize_weight(W, H, bits_, gs, cfg_, name);
    L.loss = layer_loss(W, grid_dequantize(L), H);
    L.loss_init = layer_loss(W, grid_dequantize(rtn_quantize_weight(W, bits_, gs)), H);
    L.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return L;
  }

 private:
  int bits_;
  GptqConfig cfg_;
};

}  // namespace

std::unique_ptr<Quantizer> make_gptq_quantizer(const QuantConfig& qc) {
  return std::make_unique<GptqQuantizer>(qc);
}

}  // namespace glvq
