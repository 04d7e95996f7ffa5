#include "quant/glvq_encode.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "common/preempt.h"
#include "quant/glvq_codec.h"

namespace glvq {
namespace {

constexpr int64_t kRowsPerPiece = 256;

/// Calls FN(g, r0, r1, sub-layout, sub-params, code offset) for every piece
/// (group g, rows [r0, r1)) of L, in parallel.
template <typename Fn>
void for_each_piece(const GlvqLayout& L, const GlvqGroupParams& p, Fn fn) {
  const std::vector<int64_t> off = glvq_group_offsets(L, p.bits);
  const int64_t row_blocks = (L.out + kRowsPerPiece - 1) / kRowsPerPiece, d2 = int64_t(L.dim) * L.dim;
  at::parallel_for(0, L.groups() * row_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t g = t / row_blocks, r0 = (t % row_blocks) * kRowsPerPiece, r1 = std::min(L.out, r0 + kRowsPerPiece);
      GlvqLayout sub = L;
      sub.out = r1 - r0;
      sub.in = L.group_cols(g);  // one group, maybe the narrower last one
      const GlvqGroupParams sp{p.bits + g, p.scale + g, p.mu + g, p.G + g * d2, p.Ginv + g * d2};
      const int64_t code_off = off[g] + r0 * L.group_vecs(g) * glvq_vec_bytes(L.dim, p.bits[g]);
      fn(g, r0, r1, sub, sp, code_off);
    }
  });
}

/// Host copies of P in the codec's parameter form.
struct HostParams {
  at::Tensor bits, scale, mu, G, Ginv;
  GlvqGroupParams view() const {
    return {bits.data_ptr<uint8_t>(), scale.data_ptr<float>(), mu.data_ptr<float>(), G.data_ptr<float>(),
            Ginv.data_ptr<float>()};
  }
};

HostParams host_params(const GlvqParams& p) {
  HostParams h;
  h.bits = p.bits.to(at::kCPU).to(at::kByte).contiguous();
  h.scale = p.scale.to(at::kCPU, at::kFloat).contiguous();
  h.mu = p.mu.to(at::kCPU, at::kFloat).contiguous();
  h.G = p.G.to(at::kCPU, at::kFloat).contiguous();
  h.Ginv = at::linalg_inv(h.G.to(at::kDouble)).to(at::kFloat).contiguous();
  return h;
}

/// Packs codes Z (float integers, [B, out * gs/d, d], any device: every group as
/// wide as a full one) into the codec layout, which keeps only the V_g vectors
/// per row of each group (the narrower last group drops its all-padding ones).
at::Tensor pack_codes(const GlvqLayout& L, const at::Tensor& Z, const uint8_t* bits) {
  const std::vector<int64_t> off = glvq_group_offsets(L, bits);
  at::Tensor codes = at::zeros({off.back()}, at::TensorOptions().dtype(at::kByte));
  const at::Tensor z = Z.to(at::kCPU).to(at::kInt).contiguous();
  const int64_t V = L.vecs_per_row(), nvec = L.out * V, d = L.dim;
  uint8_t* out = codes.data_ptr<uint8_t>();
  const int32_t* zp = z.data_ptr<int32_t>();
  at::parallel_for(0, L.groups(), 1, [&](int64_t g_begin, int64_t g_end) {
    std::vector<int32_t> uz(static_cast<size_t>(d));
    for (int64_t g = g_begin; g < g_end; ++g) {
      const int b = bits[g];
      const int32_t lo = -(1 << (b - 1));
      const int64_t vb = glvq_vec_bytes(L.dim, b), Vg = L.group_vecs(g);
      for (int64_t r = 0; r < L.out; ++r) {
        for (int64_t v = 0; v < Vg; ++v) {
          const int32_t* zv = zp + (g * nvec + r * V + v) * d;
          for (int64_t i = 0; i < d; ++i) {
            GLVQ_ASSERT(zv[i] >= lo && zv[i] < -lo);
            uz[i] = zv[i] - lo;
          }
          glvq_pack_vec(uz.data(), L.dim, b, out + off[g] + (r * Vg + v) * vb);
        }
      }
    }
  });
  return codes;
}

}  // namespace

void glvq_encode_ref_parallel(const GlvqLayout& L, const GlvqGroupParams& p, const float* W, uint8_t* codes) {
  for_each_piece(
      L, p, [&](int64_t g, int64_t r0, int64_t r1, const GlvqLayout& sub, const GlvqGroupParams& sp, int64_t code_off) {
        std::vector<float> buf(static_cast<size_t>((r1 - r0) * sub.in));
        for (int64_t r = r0; r < r1; ++r)
          std::copy_n(W + r * L.in + g * L.group_size, sub.in, buf.data() + (r - r0) * sub.in);
        glvq_encode_ref(sub, sp, buf.data(), codes + code_off);
      });
}

void glvq_decode_ref_parallel(const GlvqLayout& L, const GlvqGroupParams& p, const uint8_t* codes, float* W_hat) {
  for_each_piece(
      L, p, [&](int64_t g, int64_t r0, int64_t r1, const GlvqLayout& sub, const GlvqGroupParams& sp, int64_t code_off) {
        std::vector<float> buf(static_cast<size_t>((r1 - r0) * sub.in));
        glvq_decode_ref(sub, sp, codes + code_off, buf.data());
        for (int64_t r = r0; r < r1; ++r)
          std::copy_n(buf.data() + (r - r0) * sub.in, sub.in, W_hat + r * L.in + g * L.group_size);
      });
}

GlvqParams glvq_round_to_storage(const GlvqParams& p) {
  auto r = [](const at::Tensor& x) { return x.to(at::kHalf).to(at::kFloat); };
  return {r(p.G), r(p.mu), r(p.scale), p.bits};
}

GlvqEncoded glvq_encode_layer(const at::Tensor& Wp, int64_t gs, const GlvqParams& p, const GlvqEncodeOptions& o) {
  GlvqLayout L;
  L.out = Wp.size(0);
  L.in = Wp.size(1);
  L.dim = static_cast<int>(p.G.size(1));
  L.group_size = static_cast<int>(gs);
  const int64_t B = L.groups(), in_pad = B * gs;
  GLVQ_ASSERT(p.G.size(0) == B && gs % L.dim == 0);
  const HostParams hp = host_params(p);
  GlvqEncoded enc;
  // The batched paths see every group as wide as a full one: the narrower last
  // group is padded with zero weights, which pack_codes drops again (whole
  // padding vectors) or stores as the codec's padded coordinates (u = 0).
  const at::Tensor Wpad = in_pad == L.in ? Wp : at::constant_pad_nd(Wp, {0, in_pad - L.in});

  if (!o.F_full.defined() && o.rounding == "babai") {
    // The codec's own encoder: codes are bit-exact with the reference.
    const std::vector<int64_t> off = glvq_group_offsets(L, hp.bits.data_ptr<uint8_t>());
    enc.codes = at::zeros({off.back()}, at::TensorOptions().dtype(at::kByte));
    const at::Tensor Wc = Wp.to(at::kCPU, at::kFloat).contiguous();
    glvq_encode_ref_parallel(L, hp.view(), Wc.data_ptr<float>(), enc.codes.data_ptr<uint8_t>());
    enc.targets = glvq_group_view(Wpad, gs);
    return enc;
  }

  if (!o.F_full.defined()) {
    enc.targets = glvq_group_view(Wpad, gs);
    const GlvqRounder r = glvq_make_rounder(p.G, p.bits, o.rounding);
    const GlvqGroupCodes c = glvq_quantize_groups(enc.targets, p, o.companding, r, at::Tensor());
    enc.codes = pack_codes(L, c.Z, hp.bits.data_ptr<uint8_t>());
    return enc;
  }

  // Error feedback, group by group: the group's target already carries the
  // errors of every group before it. F_FULL is [in_pad, in_pad] (zero between
  // real and padding columns).
  GLVQ_ASSERT(o.F_full.size(0) == in_pad && o.F_full.size(1) == in_pad);
  const bool in_group = o.feedback_block < gs;
  at::Tensor W = Wpad.to(at::kFloat).clone();
  enc.targets = at::empty({B, L.out, gs}, W.options());
  enc.errors = at::empty({B, L.out, gs}, W.options());
  at::Tensor Z = at::empty({B, L.out * (gs / L.dim), L.dim}, W.options());
  for (int64_t g = 0; g < B; ++g) {
    throw_if_preempted("the GLVQ feedback encode");
    const int64_t c0 = g * gs, c1 = c0 + gs;
    const at::Tensor T = W.slice(1, c0, c1).unsqueeze(0).contiguous();
    enc.targets.select(0, g).copy_(T.squeeze(0));
    const GlvqParams pg = p.slice(g, g + 1);
    const GlvqRounder r = glvq_make_rounder(pg.G, pg.bits, o.rounding);
    const at::Tensor Fg = in_group ? o.F_full.slice(0, c0, c1).slice(1, c0, c1).unsqueeze(0) : at::Tensor();
    const GlvqGroupCodes c = glvq_quantize_groups(T, pg, o.companding, r, Fg);
    Z.select(0, g).copy_(c.Z.squeeze(0));
    enc.errors.select(0, g).copy_(c.E.squeeze(0));
    if (c1 < in_pad) W.slice(1, c1, in_pad).sub_(at::mm(c.E.squeeze(0), o.F_full.slice(0, c0, c1).slice(1, c1, in_pad)));
  }
  enc.codes = pack_codes(L, Z, hp.bits.data_ptr<uint8_t>());
  return enc;
}

}  // namespace glvq
