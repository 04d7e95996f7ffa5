#include "quant/glvq_shaped.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "quant/glvq_bit_alloc.h"
#include "quant/glvq_codebook.h"
#include "quant/glvq_codec.h"
#include "quant/glvq_feedback.h"
#include "quant/glvq_group_ops.h"
#include "quant/glvq_hadamard.h"
#include "quant/glvq_init.h"
#include "quant/glvq_shaped_cuda.h"
#include "quant/glvq_shaped_ops.h"

namespace glvq {
namespace {

// Multipliers of the init generator tried per group: fed-forward targets are
// wider than the weights, and the metric weighs groups differently.
const std::vector<double> kInitFactors = {0.9, 1.0, 1.1, 1.25};
constexpr double kLloydRidge = 1e-6;

at::Tensor fp16_grid(const at::Tensor& x) { return x.to(at::kHalf).to(at::kFloat); }

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

double seconds_since(std::chrono::steady_clock::time_point& t) {
  const auto now = std::chrono::steady_clock::now();
  const double s = std::chrono::duration<double>(now - t).count();
  t = now;
  return s;
}

/// The codes of ENC (over the padded width, [out, in_pad / 8]) in the codec layout
/// (glvq_codec.h: group-major, row-major over (row, vector), sub-code k of a vector
/// at byte b*k, little-endian); a narrower last group keeps its real vectors only.
at::Tensor pack_shaped(const GlvqLayout& L, const at::Tensor& codes, const uint8_t* bits) {
  const std::vector<int64_t> off = glvq_group_offsets(L, bits);
  at::Tensor out = at::zeros({off.back()}, at::TensorOptions().dtype(at::kByte));
  const at::Tensor c = codes.contiguous();
  const int64_t* cp = c.data_ptr<int64_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  const int64_t sub = L.dim / kShapedBlock, cols = c.size(1);
  for (int64_t g = 0; g < L.groups(); ++g) {
    const int b = bits[g];
    const int64_t vb = glvq_vec_bytes(L.dim, b), V = L.group_vecs(g);
    for (int64_t r = 0; r < L.out; ++r)
      for (int64_t v = 0; v < V; ++v)
        for (int64_t k = 0; k < sub; ++k) {
          const uint64_t code = static_cast<uint64_t>(cp[r * cols + (g * L.group_size + v * L.dim) / kShapedBlock + k]);
          uint8_t* dst = o + off[g] + (r * V + v) * vb + b * k;
          for (int i = 0; i < b; ++i) dst[i] = uint8_t(code >> (8 * i));
        }
  }
  return out;
}

}  // namespace

void glvq_check_shaped_config(const GlvqConfig& c) {
  GLVQ_USAGE_CHECK(c.dim % kShapedBlock == 0,
                   "quant.glvq.code = shaped needs quant.glvq.dim to be a multiple of {} (got {})", kShapedBlock, c.dim);
  GLVQ_USAGE_CHECK(!c.companding, "quant.glvq.code = shaped has no companding: set quant.glvq.companding = false");
}

QuantizedLinear glvq_shaped_quantize_layer(const GlvqPrepared& pin, const std::string& name, const GlvqOptions& opt,
                                           int64_t gs) {
  auto t0 = std::chrono::steady_clock::now(), lap = t0;
  const GlvqConfig& c = opt.cfg;
  // The search runs where the layer is when this build has the GPU encoder, else on the CPU;
  // GLVQ_SHAPED_SEARCH=cpu keeps it on the CPU (benchmarks time both paths in one run).
  const char* search = std::getenv("GLVQ_SHAPED_SEARCH");
  const bool cpu_search = search != nullptr && std::string(search) == "cpu";
  const at::Device dev = pin.Wp.is_cuda() && glvq_shaped_cuda_built() && !cpu_search ? pin.Wp.device()
                                                                                       : at::Device(at::kCPU);
  const at::Tensor Hp = pin.Hp.to(dev, at::kFloat).contiguous();
  const int64_t out = pin.Wp.size(0), in = pin.Wp.size(1), d = c.dim;
  glvq_check_shaped_config(c);
  GLVQ_CHECK(gs > 0 && gs % d == 0, "layer {}: group size {} is not a multiple of dim {}", name, gs, d);
  // A narrower last group is padded with zero weight columns whose errors no metric
  // below sees (glvq.cpp's rule for the box code); only its real vectors are stored.
  const int64_t B = (in + gs - 1) / gs, in_pad = B * gs, pad = in_pad - in, last_cols = in - (B - 1) * gs;
  const at::Tensor Wp = at::constant_pad_nd(pin.Wp.to(dev, at::kFloat), {0, pad}).contiguous();

  // Metric of every vector column and the feedback factor.
  at::Tensor F, D;
  if (c.error_feedback) {
    const at::Tensor U = glvq_pad_factor(glvq_inverse_cholesky(Hp, opt.damp, name), in_pad);
    F = glvq_feedback_matrix(U, d);
    D = glvq_feedback_metrics(U, d);
    if (pad > 0) {  // padding is never a weight: its errors cost nothing
      const at::Tensor real = (at::arange(in_pad) < in).to(dev, at::kFloat).reshape({in_pad / d, d});
      D = D * real.unsqueeze(2) * real.unsqueeze(1);
    }
  } else {
    D = glvq_diag_blocks(at::constant_pad_nd(Hp, {0, pad, 0, pad}), d);
  }
  const double t_prep = seconds_since(lap);

  // Init at every width the allocation asks about: G = a chol(E[u u^T]) per group.
  const at::Tensor Wg = glvq_group_view(Wp, gs);
  const GlvqInitStats st = glvq_init_stats(Wg, d, /*companding=*/false, pad > 0 ? last_cols : 0);
  at::Tensor base = st.chol;
  if (opt.scalar_init) {  // QuIP#-like: the book scaled by the group's RMS, no shape learned
    const at::Tensor rms = (st.chol.square().sum({1, 2}) / double(d)).sqrt();
    base = at::eye(d, st.chol.options()).unsqueeze(0) * rms.reshape({B, 1, 1});
  }
  std::map<int, std::pair<at::Tensor, at::Tensor>> inits;  // width -> (G, group losses)
  auto init_at = [&](int b) -> const std::pair<at::Tensor, at::Tensor>& {
    auto it = inits.find(b);
    if (it != inits.end()) return it->second;
    const at::Tensor bits = at::full({B}, b, at::TensorOptions().dtype(at::kLong));
    at::Tensor bestG = base.clone(),
               best = at::full({B}, std::numeric_limits<float>::infinity(), base.options().dtype(at::kFloat));
    for (double a : kInitFactors) {
      const at::Tensor G = fp16_grid(base * a);
      // Nearest codewords only: the scale grid and the allocation compare inits, and the
      // metric search would cost most of the layer's time here (it runs in the rounds below).
      const GlvqShapedCodes enc = glvq_shaped_encode_layer(Wp, gs, {G, st.scale, bits}, F, /*inter=*/false, D, 1);
      const at::Tensor l = glvq_shaped_group_losses(enc, D, gs);
      const at::Tensor better = l < best;
      bestG = at::where(better.reshape({B, 1, 1}), G, bestG);
      best = at::where(better, l, best);
    }
    return inits.emplace(b, std::make_pair(bestG, best)).first->second;
  };
  const at::Tensor diagH = at::constant_pad_nd(Hp.diagonal(), {0, pad}).reshape({B, 1, gs});
  const std::vector<double> salience = to_vector((Wg.square() * diagH).sum({1, 2}));
  const std::vector<int> widths = glvq_allocate_layer_bits(
      opt.bits, in, gs, salience, c.bit_alloc, [&](int b) { return to_vector(init_at(b).second); }, opt.alloc_search);
  const at::Tensor bits_t = at::tensor(std::vector<int64_t>(widths.begin(), widths.end()), at::kLong);
  const at::Tensor bits_dev = bits_t.to(dev);
  at::Tensor G = at::empty({B, d, d}, base.options());
  for (int b : std::set<int>(widths.begin(), widths.end()))
    G = at::where((bits_dev == b).reshape({B, 1, 1}), init_at(b).first, G);
  const double t_init = seconds_since(lap);

  // Lloyd: codes for the current G (with every feedback), then the best G for those codes.
  const at::Tensor scale = st.scale;
  at::Tensor bestG = G, G_init = G;
  double best_loss = std::numeric_limits<double>::infinity();
  std::vector<double> history;
  for (int it = 0;; ++it) {
    const GlvqShapedCodes enc = glvq_shaped_encode_layer(Wp, gs, {G, scale, bits_t}, F, /*inter=*/true, D, opt.cfg.candidates);
    const double loss = glvq_shaped_group_losses(enc, D, gs).sum().item<double>();
    history.push_back(loss);
    if (loss < best_loss) {
      best_loss = loss;
      bestG = G;
    }
    if (it >= c.lloyd_iters) break;
    // Rows of G for padding coordinates have no data: they keep their values.
    G = fp16_grid(glvq_shaped_lloyd_update(enc, D, scale, gs, d, kLloydRidge, G));
  }
  const double t_learn = seconds_since(lap);

  // The stored arrays, and their loss as decoded.
  GlvqLayout L;
  L.out = out;
  L.in = in;
  L.dim = static_cast<int>(d);
  L.group_size = static_cast<int>(gs);
  L.code = GlvqCode::shaped;
  const at::Tensor bits_u8 = bits_t.to(at::kByte).contiguous();
  auto store = [&](const at::Tensor& Gs) {
    const GlvqShapedCodes enc = glvq_shaped_encode_layer(Wp, gs, {Gs, scale, bits_t}, F, /*inter=*/true, D, opt.cfg.candidates);
    QuantizedLinear q;
    q.method = "glvq";
    q.out = out;
    q.in = in;
    q.arrays["codes"] = pack_shaped(L, enc.codes.to(at::kCPU), bits_u8.data_ptr<uint8_t>());
    q.arrays["G"] = Gs.to(at::kCPU).to(at::kHalf).contiguous();
    q.arrays["mu"] = at::zeros({B}, at::TensorOptions().dtype(at::kHalf));
    q.arrays["scale"] = scale.to(at::kCPU).to(at::kHalf).contiguous();
    q.arrays["bits"] = bits_u8;
    if (pin.s_in.defined()) {
      q.arrays["signs_in"] = glvq_pack_signs(pin.s_in);
      q.arrays["signs_out"] = glvq_pack_signs(pin.s_out);
    }
    q.attrs["dim"] = static_cast<double>(d);
    q.attrs["group_size"] = static_cast<double>(gs);
    q.attrs["incoherence"] = pin.s_in.defined() ? 1.0 : 0.0;
    q.attrs["seed"] = static_cast<double>(opt.seed);
    q.attrs["code"] = static_cast<double>(static_cast<int>(GlvqCode::shaped));
    q.attrs["codebook"] = static_cast<double>(kShapedBookVersion);
    q.loss = layer_loss(pin.W, glvq_dequantize_on(q, pin.W.device()), pin.H);
    return q;
  };
  QuantizedLinear q = store(bestG);
  q.loss_init = bestG.equal(G_init) ? q.loss : store(G_init).loss;
  const double t_store = seconds_since(lap);
  q.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ref = layer_loss(pin.W, at::zeros_like(pin.W), pin.H);
  std::string hist;
  for (double h : history) hist += fmt::format(" {:.4g}", h / ref);
  log_debug("glvq {} [{}, {}] shaped: loss/||W||_H^2 init {:.5g} -> {:.5g} in {:.2f} s (prepare {:.2f}, init {:.2f}, "
            "lloyd {:.2f}, store {:.2f}); rounds:{}",
            name, out, in, q.loss_init / ref, q.loss / ref, q.seconds, t_prep, t_init, t_learn, t_store, hist);
  return q;
}

}  // namespace glvq
