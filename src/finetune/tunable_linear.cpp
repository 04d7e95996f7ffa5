#include "finetune/tunable_linear.h"

#include "common/error.h"
#include "quant/glvq.h"
#include "quant/glvq_codec.h"
#include "quant/glvq_hadamard.h"
#include "quant/rtn.h"

#include <c10/core/GradMode.h>

#include <cmath>

namespace glvq {
namespace {

at::Tensor leaf(const at::Tensor& value) {
  at::Tensor t = value.detach().clone();
  t.set_requires_grad(true);
  return t;
}

double attr_or_throw(const QuantizedLinear& q, const char* key) {
  auto it = q.attrs.find(key);
  GLVQ_CHECK(it != q.attrs.end(), "{} layer [{}, {}] lacks the attribute \"{}\"; the checkpoint is incomplete",
             q.method, q.out, q.in, key);
  return it->second;
}

/// The format's expand (quant/glvq_codec.h) of U [..., cols] with S and MU broadcast
/// against it; MASK says where mu > 0 (elsewhere MU is any positive placeholder).
at::Tensor expand(const at::Tensor& u, const at::Tensor& s, const at::Tensor& mu, const at::Tensor& mask,
                  bool any_companding) {
  const at::Tensor lin = s * u;
  if (!any_companding) return lin;
  const at::Tensor comp = at::sign(u) * s * at::expm1(u.abs() * at::log1p(mu)) / mu;
  return at::where(mask, comp, lin);
}

}  // namespace

TunableLinear::TunableLinear(const QuantizedLinear& q, const at::Device& device)
    : TunableLinear(q, device, at::kFloat) {}

TunableLinear::TunableLinear(const QuantizedLinear& q, const at::Device& device, at::ScalarType dtype)
    : q_(q), out_(q.out), in_(q.in) {
  const auto opt = at::TensorOptions().dtype(dtype).device(device);
  if (q.method == "glvq") {
    glvq_ = true;
    const GlvqLayout L = glvq_layer_layout(q);
    const int64_t B = L.groups(), d = L.dim;
    const at::Tensor bits = glvq_layer_bits(q, L);
    const at::Tensor codes = glvq_layer_codes(q, L, bits);
    int64_t total = 0;
    for (int64_t g = 0; g < B; ++g) total += L.out * L.group_vecs(g) * d;
    at::Tensor t = at::empty({total}, at::TensorOptions().dtype(at::kFloat));
    glvq_code_coords_ref(L, bits.data_ptr<uint8_t>(), codes.data_ptr<uint8_t>(), t.data_ptr<float>());
    gs_ = L.group_size;
    while (full_ < B && L.group_cols(full_) == gs_) ++full_;
    GLVQ_ASSERT(full_ >= B - 1);
    const int64_t n_full = full_ * L.out * L.vecs_per_row() * d;
    coords_full_ = t.narrow(0, 0, n_full).reshape({full_, L.out * L.vecs_per_row(), d}).to(opt);
    if (full_ < B) {
      last_cols_ = L.group_cols(B - 1);
      coords_last_ = t.narrow(0, n_full, total - n_full).reshape({-1, d}).to(opt);
    }
    const at::Tensor G0 = glvq_layer_array(q, "G", at::kHalf, B * d * d).to(opt).reshape({B, d, d});
    const at::Tensor s0 = glvq_layer_array(q, "scale", at::kHalf, B).to(opt);
    const at::Tensor mu0 = glvq_layer_array(q, "mu", at::kHalf, B).to(opt);
    GLVQ_CHECK(at::all(s0 > 0).item<bool>() && at::all(mu0 >= 0).item<bool>(),
               "glvq layer [{}, {}]: a group has scale <= 0 or mu < 0: the checkpoint is damaged", q.out, q.in);
    g_rms_ = G0.square().mean({1, 2}, /*keepdim=*/true).sqrt().clamp_min(1e-30);
    mu_mask_ = mu0 > 0;
    any_mu_ = at::any(mu_mask_).item<bool>();
    params_ = {leaf(G0 / g_rms_), leaf(s0.log()), leaf(at::where(mu_mask_, mu0, at::ones_like(mu0)).log())};
    if (attr_or_throw(q, "incoherence") != 0) {
      signs_in_ = glvq_unpack_signs(glvq_layer_array(q, "signs_in", at::kByte, (q.in + 7) / 8), q.in).to(opt);
      signs_out_ = glvq_unpack_signs(glvq_layer_array(q, "signs_out", at::kByte, (q.out + 7) / 8), q.out).to(opt);
    }
    return;
  }
  GLVQ_CHECK(q.method == "rtn" || q.method == "gptq",
             "fine-tuning knows the methods glvq, rtn and gptq; this layer was stored by \"{}\"", q.method);
  // grid_dequantize checks the arrays; its result with scale 1 is q - zero.
  QuantizedLinear unit = q;
  unit.arrays["scale"] = at::ones_like(q.arrays.at("scale"));
  qz_ = grid_dequantize(unit).to(opt);
  grid_gs_ = static_cast<int64_t>(attr_or_throw(q, "group_size"));
  const int64_t groups = grid_groups(q.in, grid_gs_);
  if (q.in % grid_gs_ != 0)
    col_group_ = at::arange(groups, at::TensorOptions().dtype(at::kLong)).repeat_interleave(grid_gs_).narrow(0, 0, q.in)
                     .to(device);
  const at::Tensor s0 = q.arrays.at("scale").to(opt);
  GLVQ_CHECK(at::all(s0 > 0).item<bool>(), "{} layer [{}, {}]: a scale is <= 0; fine-tuning keeps scales positive",
             q.method, q.out, q.in);
  params_ = {leaf(s0.log())};
}

at::Tensor TunableLinear::weight() const {
  if (!glvq_) {
    const at::Tensor s = params_[0].exp();  // [out, groups]
    if (!col_group_.defined())
      return (qz_.view({out_, -1, grid_gs_}) * s.unsqueeze(2)).view({out_, in_});
    return qz_ * s.index_select(1, col_group_);
  }
  const at::Tensor G = params_[0] * g_rms_;  // [B, d, d]
  const at::Tensor s = params_[1].exp(), mu = params_[2].exp();
  const int64_t B = G.size(0);
  std::vector<at::Tensor> parts;
  if (full_ > 0) {
    // u = G t for every vector: [full, out * V, d] x [full, d, d]^T.
    const at::Tensor u = at::bmm(coords_full_, G.narrow(0, 0, full_).transpose(1, 2)).view({full_, out_, gs_});
    const at::Tensor w = expand(u, s.narrow(0, 0, full_).view({full_, 1, 1}), mu.narrow(0, 0, full_).view({full_, 1, 1}),
                                mu_mask_.narrow(0, 0, full_).view({full_, 1, 1}), any_mu_);
    parts.push_back(w.permute({1, 0, 2}).reshape({out_, full_ * gs_}));
  }
  if (full_ < B) {
    const at::Tensor u = at::matmul(coords_last_, G[B - 1].t()).reshape({out_, -1}).narrow(1, 0, last_cols_);
    parts.push_back(expand(u, s[B - 1], mu[B - 1], mu_mask_[B - 1], any_mu_));
  }
  at::Tensor W = parts.size() == 1 ? parts[0] : at::cat(parts, 1);
  if (signs_in_.defined()) W = glvq_coherent_weight(W, signs_out_, signs_in_);
  return W;
}

std::vector<at::Tensor> TunableLinear::snapshot() const {
  std::vector<at::Tensor> v;
  for (const auto& p : params_) v.push_back(p.detach().clone());
  return v;
}

void TunableLinear::restore(const std::vector<at::Tensor>& values) {
  GLVQ_ASSERT(values.size() == params_.size());
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].copy_(values[i]);
}

QuantizedLinear TunableLinear::stored() const {
  c10::NoGradGuard no_grad;
  QuantizedLinear q = q_;
  auto half_like = [&](const at::Tensor& v, const char* key) {
    q.arrays[key] = v.to(at::kCPU, at::kFloat).to(at::kHalf).reshape(q_.arrays.at(key).sizes()).contiguous();
  };
  if (!glvq_) {
    half_like(params_[0].exp(), "scale");
    return q;
  }
  half_like(params_[0] * g_rms_, "G");
  half_like(params_[1].exp(), "scale");
  half_like(at::where(mu_mask_, params_[2].exp(), at::zeros_like(params_[2])), "mu");
  return q;
}

}  // namespace glvq
