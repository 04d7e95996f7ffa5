#include "quant/glvq.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "quant/glvq_codec.h"
#include "quant/glvq_decode_cuda.h"
#include "quant/glvq_encode.h"
#include "quant/glvq_feedback.h"
#include "quant/glvq_group_ops.h"
#include "quant/glvq_hadamard.h"
#include "quant/glvq_init.h"
#include "quant/glvq_learn.h"
#include "quant/glvq_codebook.h"
#include "quant/glvq_shaped.h"

namespace glvq {
namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

double attr(const QuantizedLinear& q, const char* key) {
  auto it = q.attrs.find(key);
  GLVQ_CHECK(it != q.attrs.end(), "the glvq layer [{}, {}] has no \"{}\" attribute: the checkpoint is damaged", q.out,
             q.in, key);
  return it->second;
}

const at::Tensor& array(const QuantizedLinear& q, const char* key, at::ScalarType dtype, int64_t numel) {
  auto it = q.arrays.find(key);
  GLVQ_CHECK(it != q.arrays.end(), "the glvq layer [{}, {}] has no \"{}\" array: the checkpoint is damaged", q.out,
             q.in, key);
  GLVQ_CHECK(it->second.scalar_type() == dtype && it->second.numel() == numel,
             "the glvq layer [{}, {}]: array \"{}\" is {} with {} values, expected {} with {}: the checkpoint is "
             "damaged",
             q.out, q.in, key, c10::toString(it->second.scalar_type()), it->second.numel(), c10::toString(dtype),
             numel);
  return it->second;
}

/// The layer as stored for transformed weight WP encoded with P (on the storage grid).
struct Stored {
  QuantizedLinear q;
  at::Tensor targets;
};

}  // namespace

GlvqLayout glvq_layer_layout(const QuantizedLinear& q) {
  GLVQ_CHECK(q.method == "glvq", "glvq_dequantize: the layer was stored by \"{}\", not glvq", q.method);
  GlvqLayout L;
  L.out = q.out;
  L.in = q.in;
  L.dim = static_cast<int>(attr(q, "dim"));
  L.group_size = static_cast<int>(attr(q, "group_size"));
  const auto code_it = q.attrs.find("code");
  const int code = code_it == q.attrs.end() ? 0 : static_cast<int>(code_it->second);
  GLVQ_CHECK(code == 0 || code == 1, "the glvq layer [{}, {}] has code kind {}, which this glvq does not know (0 box, "
             "1 shaped): it was written by a newer glvq", q.out, q.in, code);
  L.code = static_cast<GlvqCode>(code);
  if (L.code == GlvqCode::shaped) {
    const int book = static_cast<int>(attr(q, "codebook"));
    GLVQ_CHECK(book == kShapedBookVersion, "the glvq layer [{}, {}] uses shaped codebook version {}, this glvq has "
               "version {}: decode it with the glvq that wrote it", q.out, q.in, book, kShapedBookVersion);
  }
  GLVQ_CHECK(L.dim >= 1 && L.group_size >= L.dim && L.group_size % L.dim == 0,
             "the glvq layer [{}, {}] has dim {} and group_size {}, which do not fit: the checkpoint is damaged", q.out,
             q.in, L.dim, L.group_size);
  return L;
}

const at::Tensor& glvq_layer_array(const QuantizedLinear& q, const char* key, at::ScalarType dtype, int64_t numel) {
  return array(q, key, dtype, numel);
}

at::Tensor glvq_layer_bits(const QuantizedLinear& q, const GlvqLayout& L) {
  const int64_t B = L.groups();
  const at::Tensor bits = array(q, "bits", at::kByte, B).contiguous();
  for (int64_t g = 0; g < B; ++g) {
    const int b = bits.data_ptr<uint8_t>()[g];
    GLVQ_CHECK(b >= 1 && b <= 8, "the glvq layer [{}, {}]: group {} has {} bits (1..8 allowed)", q.out, q.in, g, b);
  }
  return bits;
}

at::Tensor glvq_layer_codes(const QuantizedLinear& q, const GlvqLayout& L, const at::Tensor& bits) {
  const std::vector<int64_t> off = glvq_group_offsets(L, bits.data_ptr<uint8_t>());
  return array(q, "codes", at::kByte, off.back()).contiguous();
}

at::Tensor glvq_dequantize_on(const QuantizedLinear& q, const at::Device& device) {
  const GlvqLayout L = glvq_layer_layout(q);
  const int64_t B = L.groups(), d = L.dim;
  const at::Tensor bits = glvq_layer_bits(q, L);
  const std::vector<int64_t> off = glvq_group_offsets(L, bits.data_ptr<uint8_t>());
  const at::Tensor codes = glvq_layer_codes(q, L, bits);
  const at::Tensor G = array(q, "G", at::kHalf, B * d * d).to(at::kFloat).reshape({B, d, d}).contiguous();
  const at::Tensor mu = array(q, "mu", at::kHalf, B).to(at::kFloat).contiguous();
  const at::Tensor scale = array(q, "scale", at::kHalf, B).to(at::kFloat).contiguous();
  // The decoder reads only G; the codec's parameter block also carries G^-1.
  const at::Tensor Ginv = at::linalg_inv(G.to(at::kDouble)).to(at::kFloat).contiguous();
  const GlvqGroupParams p{bits.data_ptr<uint8_t>(), scale.data_ptr<float>(), mu.data_ptr<float>(), G.data_ptr<float>(),
                          Ginv.data_ptr<float>()};
  at::Tensor W;
  if (device.is_cuda()) {  // box and shaped codes alike (kernels/glvq_decode.cu, glvq_shaped.cu)
    W = glvq_decode_cuda(L, bits, scale, mu, G, Ginv, off, codes, device);
  } else {
    W = at::empty({q.out, q.in}, at::TensorOptions().dtype(at::kFloat));
    glvq_decode_ref_parallel(L, p, codes.data_ptr<uint8_t>(), W.data_ptr<float>());
    W = W.to(device);
  }
  if (attr(q, "incoherence") != 0) {
    const at::Tensor s_in = glvq_unpack_signs(array(q, "signs_in", at::kByte, (q.in + 7) / 8), q.in);
    const at::Tensor s_out = glvq_unpack_signs(array(q, "signs_out", at::kByte, (q.out + 7) / 8), q.out);
    W = glvq_coherent_weight(W, s_out.to(device), s_in.to(device));
  }
  return W;
}

at::Tensor glvq_dequantize(const QuantizedLinear& q) { return glvq_dequantize_on(q, at::Device(at::kCPU)); }

QuantizedLinear glvq_quantize_layer(const at::Tensor& W_in, const at::Tensor& H_in, const std::string& name,
                                    const GlvqOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  auto last = t0;
  auto lap = [&last]() {
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - last).count();
    last = now;
    return s;
  };
  GlvqConfig c = opt.cfg;
  // Both of glvq's roundings are Babai's; the config names them round_off and nearest_plane, the code
  // (and configs written before the rename) calls round-off "babai".
  if (c.rounding == "round_off") c.rounding = "babai";
  GLVQ_CHECK(W_in.dim() == 2 && H_in.dim() == 2 && H_in.size(0) == W_in.size(1) && H_in.size(1) == W_in.size(1),
             "layer {}: glvq needs W [out, in] and H [in, in], got {} and {} dimensions", name, W_in.dim(), H_in.dim());
  const int64_t out = W_in.size(0), in = W_in.size(1), d = c.dim;
  GLVQ_CHECK(d >= 2 && (c.group_size == 0 || c.group_size % d == 0),
             "layer {}: quant.glvq.dim = {} must divide quant.glvq.group_size = {}", name, d, c.group_size);
  // Any width: ceil(in/gs) groups, the last one narrower when gs does not divide in
  // (glvq_codec.h). A group wider than the row (or group_size 0) is the whole row,
  // rounded up to whole vectors.
  const int64_t row = (in + d - 1) / d * d;
  const int64_t gs = c.group_size == 0 ? row : std::min<int64_t>(c.group_size, row);
  const int64_t B = (in + gs - 1) / gs, in_pad = B * gs, last_cols = in - (B - 1) * gs;
  const bool narrow = in_pad != in;
  GLVQ_CHECK(c.rounding == "babai" || c.rounding == "nearest_plane",
             "quant.glvq.rounding = \"{}\" is not known (round_off, nearest_plane)", opt.cfg.rounding);
  const at::Device dev = W_in.device();
  const at::Tensor W = W_in.to(at::kFloat).contiguous();
  const at::Tensor H = H_in.to(dev, at::kFloat).contiguous();
  const uint64_t layer_seed = mix(opt.seed, fnv1a(name));

  at::Tensor Wp = W, Hp = H, s_in, s_out;
  if (c.incoherence) {
    s_in = glvq_random_signs(in, mix(layer_seed, 1)).to(dev);
    s_out = glvq_random_signs(out, mix(layer_seed, 2)).to(dev);
    Wp = glvq_incoherent_weight(W, s_out, s_in);
    Hp = glvq_incoherent_hessian(H, s_in);
  }
  if (c.code == "shaped") return glvq_shaped_quantize_layer({W, H, Wp, Hp, s_in, s_out}, name, opt, gs);
  // The batched learning sees B groups of gs columns: a narrower last group is
  // padded with zero weights whose errors every metric below ignores.
  const int64_t pad = in_pad - in;
  const at::Tensor Wg = glvq_group_view(narrow ? at::constant_pad_nd(Wp, {0, pad}) : Wp, gs);

  // Metric of each group and the feedback factors.
  at::Tensor A, F_intra;
  GlvqEncodeOptions eo;
  eo.companding = c.companding;
  eo.rounding = c.rounding;
  if (c.error_feedback) {
    const int64_t fb = opt.feedback_block > 0 ? opt.feedback_block : d;
    GLVQ_CHECK(gs % fb == 0 && fb % d == 0, "layer {}: feedback block {} must be a multiple of dim {} dividing {}",
               name, fb, d, gs);
    const at::Tensor U = glvq_pad_factor(glvq_inverse_cholesky(Hp, opt.damp, name), in_pad);
    eo.F_full = glvq_feedback_matrix(U, fb);
    eo.feedback_block = fb;
    A = glvq_feedback_metrics(U, gs);
    if (fb < gs) F_intra = glvq_diag_blocks(eo.F_full, gs);
  } else {
    A = glvq_diag_blocks(narrow ? at::constant_pad_nd(Hp, {0, pad, 0, pad}) : Hp, gs);
  }
  if (narrow) {
    // Padding is never a weight: its errors cost nothing.
    at::Tensor Al = A.select(0, B - 1);
    Al.slice(0, last_cols, gs).zero_();
    Al.slice(1, last_cols, gs).zero_();
  }

  const double t_prep = lap();
  // Init at every width the allocation asks about; the allocation picks per group.
  const GlvqInitStats st = glvq_init_stats(Wg, d, c.companding, narrow ? last_cols : 0);
  std::map<int, std::pair<GlvqParams, at::Tensor>> inits;
  auto init_at = [&](int b) -> const std::pair<GlvqParams, at::Tensor>& {
    auto it = inits.find(b);
    if (it == inits.end()) {
      const at::Tensor bits = at::full({B}, b, at::TensorOptions().dtype(at::kLong).device(dev));
      at::Tensor loss;
      GlvqParams p = glvq_init_params(Wg, st, bits, A, F_intra, c.rounding, c.companding, &loss);
      it = inits.emplace(b, std::make_pair(p, loss)).first;
    }
    return it->second;
  };
  const at::Tensor diagH = (narrow ? at::constant_pad_nd(Hp.diagonal(), {0, pad}) : Hp.diagonal()).reshape({B, 1, gs});
  const std::vector<double> salience = to_vector((Wg.square() * diagH).sum({1, 2}));
  const std::vector<int> widths = glvq_allocate_layer_bits(
      opt.bits, in, gs, salience, c.bit_alloc, [&](int b) { return to_vector(init_at(b).second); }, opt.alloc_search);
  at::Tensor bits_t = at::tensor(std::vector<int64_t>(widths.begin(), widths.end()), at::kLong).to(dev);
  GlvqParams P0{at::empty({B, d, d}, W.options()), st.mu, st.scale, bits_t};
  for (int b : std::set<int>(widths.begin(), widths.end()))
    P0.G = at::where((bits_t == b).reshape({B, 1, 1}), init_at(b).first.G, P0.G);

  auto finish = [&](const GlvqParams& params) {
    const auto t_enc = std::chrono::steady_clock::now();
    const GlvqParams ps = glvq_round_to_storage(params);
    GlvqEncoded enc = glvq_encode_layer(Wp, gs, ps, eo);
    Stored s;
    QuantizedLinear& q = s.q;
    q.method = "glvq";
    q.out = out;
    q.in = in;
    q.arrays["codes"] = enc.codes;
    q.arrays["G"] = ps.G.to(at::kCPU).to(at::kHalf).contiguous();
    q.arrays["mu"] = ps.mu.to(at::kCPU).to(at::kHalf).contiguous();
    q.arrays["scale"] = ps.scale.to(at::kCPU).to(at::kHalf).contiguous();
    q.arrays["bits"] = ps.bits.to(at::kCPU).to(at::kByte).contiguous();
    if (c.incoherence) {
      q.arrays["signs_in"] = glvq_pack_signs(s_in);
      q.arrays["signs_out"] = glvq_pack_signs(s_out);
    }
    q.attrs["dim"] = static_cast<double>(d);
    q.attrs["group_size"] = static_cast<double>(gs);
    q.attrs["incoherence"] = c.incoherence ? 1.0 : 0.0;
    q.attrs["seed"] = static_cast<double>(opt.seed);
    const auto t_dec = std::chrono::steady_clock::now();
    q.loss = layer_loss(W, glvq_dequantize_on(q, dev), H);
    log_debug("glvq {}: encode {:.2f} s, decode + loss {:.2f} s", name,
              std::chrono::duration<double>(t_dec - t_enc).count(),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t_dec).count());
    s.targets = enc.targets;
    return s;
  };

  GlvqLearnOptions lo;
  lo.iters = c.iters;
  lo.lr = c.lr;
  lo.lambda = c.lambda;
  lo.sigma_min = c.sigma_min;
  lo.sigma_max = c.sigma_max;
  lo.eps = c.eps;
  lo.companding = c.companding;
  lo.rounding = c.rounding;
  lo.cosine = opt.cosine;

  const double t_init = lap();
  double t_learn = 0, t_finish = 0;
  const Stored init = finish(P0);
  t_finish += lap();
  Stored best = init;
  if (opt.learn && c.iters > 0) {
    GlvqParams P = glvq_learn(Wg, A, F_intra, P0, lo).best;
    t_learn += lap();
    Stored cur = finish(P);
    t_finish += lap();
    if (cur.q.loss < best.q.loss) best = cur;
    // With feedback a group's real target is W' plus the errors fed forward to
    // it: learn again on those targets (they move little between passes).
    for (int pass = 2; c.error_feedback && pass <= opt.passes; ++pass) {
      P = glvq_learn(cur.targets, A, F_intra, P, lo).best;
      t_learn += lap();
      cur = finish(P);
      t_finish += lap();
      if (cur.q.loss < best.q.loss) best = cur;
    }
  }
  QuantizedLinear q = best.q;
  q.loss_init = init.q.loss;
  q.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ref = layer_loss(W, at::zeros_like(W), H);
  log_debug(
      "glvq {} [{}, {}]: loss/||W||_H^2 init {:.5g} -> {:.5g} in {:.2f} s (prepare {:.2f}, init {:.2f}, "
      "learn {:.2f}, encode+decode {:.2f})",
      name, out, in, init.q.loss / ref, q.loss / ref, q.seconds, t_prep, t_init, t_learn, t_finish);
  return q;
}

namespace {

class GlvqQuantizer : public Quantizer {
 public:
  explicit GlvqQuantizer(GlvqOptions opt) : opt_(std::move(opt)) {}
  QuantizedLinear quantize(const at::Tensor& W, const at::Tensor& H, const std::string& name) override {
    check_layer_inputs(W, H, name);
    return glvq_quantize_layer(W, H, name, opt_);
  }

 private:
  GlvqOptions opt_;
};

}  // namespace

std::unique_ptr<Quantizer> make_glvq_quantizer(const QuantConfig& qc, uint64_t seed) {
  GLVQ_USAGE_CHECK(qc.bits >= 1 && qc.bits <= 8, "quant.bits = {}: glvq needs 1..8 bits per weight", qc.bits);
  GLVQ_USAGE_CHECK(qc.glvq.rounding == "round_off" || qc.glvq.rounding == "babai" || qc.glvq.rounding == "nearest_plane",
                   "quant.glvq.rounding = \"{}\" is not known (round_off, nearest_plane)", qc.glvq.rounding);
  if (qc.glvq.code == "shaped") glvq_check_shaped_config(qc.glvq);
  GlvqOptions opt;
  opt.cfg = qc.glvq;
  opt.bits = qc.bits;
  opt.seed = seed;
  return std::make_unique<GlvqQuantizer>(opt);
}

}  // namespace glvq
