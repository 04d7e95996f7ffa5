#include "quant/glvq_shaped_ops.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "common/preempt.h"
#include "kernels/glvq_math.h"
#include "quant/glvq_codebook.h"
#include "quant/glvq_shaped_cuda.h"

namespace glvq {
namespace {

/// One group's parameters as host floats.
struct GroupParams {
  std::vector<float> G, Ginv;
  float s = 1;
  int bits = 2;
};

GroupParams group_params(const GlvqShapedParams& p, int64_t g) {
  const int64_t d = p.G.size(1);
  GroupParams gp;
  const at::Tensor Gd = p.G.select(0, g).to(at::kDouble);
  const at::Tensor G = Gd.to(at::kFloat).contiguous();
  const at::Tensor Gi = at::linalg_inv(Gd).to(at::kFloat).contiguous();
  gp.G.assign(G.data_ptr<float>(), G.data_ptr<float>() + d * d);
  gp.Ginv.assign(Gi.data_ptr<float>(), Gi.data_ptr<float>() + d * d);
  gp.s = p.scale[g].item<float>();
  gp.bits = static_cast<int>(p.bits[g].item<int64_t>());
  GLVQ_CHECK(gp.s > 0 && gp.bits >= 1 && gp.bits <= 8, "shaped GLVQ: group {} has scale {} and {} bits", g, gp.s,
             gp.bits);
  return gp;
}

/// Encodes the d columns [a, a + d) of every row of T into codes, C and W_hat:
/// the codec's rule (nearest codeword per 8 coordinates of y = G^-1 t / s), then,
/// when M (d x d, = G^T D_p G) is given, each sub-code in turn replaced by the
/// best of its K candidates under the metric (y - c)^T M (y - c) of the error.
void encode_vector_column(const GroupParams& gp, int64_t d, int64_t a, const std::vector<double>& M, int K,
                          at::Tensor& T, GlvqShapedCodes& out) {
  const int64_t rows = T.size(0), in = T.size(1);
  const float* t = T.data_ptr<float>();
  int64_t* codes = out.codes.data_ptr<int64_t>();
  float* C = out.C.data_ptr<float>();
  float* W_hat = out.W_hat.data_ptr<float>();
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    std::vector<float> u(d), y(d);
    std::vector<double> e(d);
    std::vector<uint64_t> cand(size_t(d / kShapedBlock) * kMaxCandidates);
    std::vector<int> ncand(d / kShapedBlock);
    const int beam = glvq_shaped_beam(gp.bits);
    for (int64_t r = r0; r < r1; ++r) {
      const float* tr = t + r * in + a;
      for (int64_t j = 0; j < d; ++j) u[j] = fp::div(tr[j], gp.s);
      for (int64_t i = 0; i < d; ++i) {
        float acc = 0.0f;
        for (int64_t j = 0; j < d; ++j) acc = fp::fma(gp.Ginv[i * d + j], u[j], acc);
        y[i] = acc;
      }
      float* c = C + r * in + a;
      int64_t* rc = codes + r * (in / kShapedBlock) + a / kShapedBlock;
      // One search per sub-vector gives both the codec's nearest (among the first
      // beam candidates) and the candidates the metric rescores.
      const bool rescore = !M.empty() && K > 1;
      for (int64_t k = 0; k < d; k += kShapedBlock) {
        uint64_t* ck = cand.data() + (k / kShapedBlock) * kMaxCandidates;
        ncand[k / kShapedBlock] = glvq_shaped_candidates(gp.bits, y.data() + k, rescore ? std::max(K, beam) : beam, ck);
        const uint64_t code = glvq_shaped_pick_nearest(gp.bits, y.data() + k, ck, std::min(ncand[k / kShapedBlock], beam));
        rc[k / kShapedBlock] = static_cast<int64_t>(code);
        glvq_shaped_decode(gp.bits, code, c + k);
      }
      if (rescore) {
        auto score = [&]() {
          for (int64_t i = 0; i < d; ++i) e[i] = double(y[i]) - double(c[i]);
          double q = 0;
          for (int64_t i = 0; i < d; ++i) {
            double mi = 0;
            for (int64_t j = 0; j < d; ++j) mi += M[i * d + j] * e[j];
            q += e[i] * mi;
          }
          return q;
        };
        for (int64_t k = 0; k < d; k += kShapedBlock) {
          const uint64_t* ck = cand.data() + (k / kShapedBlock) * kMaxCandidates;
          const int n = std::min(ncand[k / kShapedBlock], K);
          float keep[kShapedBlock];
          std::copy_n(c + k, kShapedBlock, keep);
          double best = score();
          uint64_t best_code = static_cast<uint64_t>(rc[k / kShapedBlock]);
          for (int m = 0; m < n; ++m) {
            glvq_shaped_decode(gp.bits, ck[m], c + k);
            const double q = score();
            if (q < best) {
              best = q;
              best_code = ck[m];
              std::copy_n(c + k, kShapedBlock, keep);
            }
          }
          std::copy_n(keep, kShapedBlock, c + k);
          rc[k / kShapedBlock] = static_cast<int64_t>(best_code);
        }
      }
      for (int64_t i = 0; i < d; ++i) {
        float acc = 0.0f;
        for (int64_t j = 0; j < d; ++j) acc = fp::fma(gp.G[i * d + j], c[j], acc);
        W_hat[r * in + a + i] = fp::mul(gp.s, acc);
      }
    }
  });
}

}  // namespace

GlvqShapedCodes glvq_shaped_encode_layer(const at::Tensor& Wp, int64_t gs, const GlvqShapedParams& p,
                                         const at::Tensor& F_full, bool inter, const at::Tensor& D, int candidates) {
  if (Wp.is_cuda()) return glvq_shaped_encode_layer_cuda(Wp, gs, p, F_full, inter, D, candidates);
  const int64_t out = Wp.size(0), in = Wp.size(1), d = p.G.size(1), B = in / gs;
  GLVQ_ASSERT(in % gs == 0 && gs % d == 0 && d % kShapedBlock == 0 && p.G.size(0) == B);
  GlvqShapedCodes res;
  at::Tensor T = Wp.to(at::kCPU, at::kFloat).clone().contiguous();
  const auto opt = T.options();
  res.codes = at::empty({out, in / kShapedBlock}, opt.dtype(at::kLong));
  res.C = at::empty({out, in}, opt);
  res.W_hat = at::empty({out, in}, opt);
  const at::Tensor F = F_full.defined() ? F_full.to(at::kCPU, at::kFloat).contiguous() : at::Tensor();
  for (int64_t g = 0; g < B; ++g) {
    const GroupParams gp = group_params(p, g);
    const int64_t c0 = g * gs, c1 = c0 + gs;
    const at::Tensor Gd = p.G.select(0, g).to(at::kDouble);
    for (int64_t a = c0; a < c1; a += d) {
      throw_if_preempted("the shaped GLVQ search");
      std::vector<double> M;
      if (D.defined() && candidates > 1) {
        const at::Tensor Mt = at::mm(at::mm(Gd.t(), D.select(0, a / d).to(at::kCPU, at::kDouble)), Gd).contiguous();
        M.assign(Mt.data_ptr<double>(), Mt.data_ptr<double>() + d * d);
      }
      encode_vector_column(gp, d, a, M, candidates, T, res);
      if (F.defined() && a + d < c1) {
        const at::Tensor e = T.slice(1, a, a + d) - res.W_hat.slice(1, a, a + d);
        T.slice(1, a + d, c1).sub_(at::mm(e, F.slice(0, a, a + d).slice(1, a + d, c1)));
      }
    }
    if (F.defined() && inter && c1 < in) {
      const at::Tensor e = T.slice(1, c0, c1) - res.W_hat.slice(1, c0, c1);
      T.slice(1, c1, in).sub_(at::mm(e, F.slice(0, c0, c1).slice(1, c1, in)));
    }
  }
  res.T = T;
  return res;
}

at::Tensor glvq_shaped_group_losses(const GlvqShapedCodes& c, const at::Tensor& D, int64_t gs) {
  const int64_t out = c.T.size(0), in = c.T.size(1), d = D.size(1), P = in / d;
  const at::Tensor E = (c.T - c.W_hat).to(at::kDouble).reshape({out, P, d}).permute({1, 0, 2});  // [P, out, d]
  const at::Tensor per_vec = (at::bmm(E, D.to(at::kDouble)) * E).sum({1, 2});                     // [P]
  return per_vec.reshape({in / gs, gs / d}).sum(1).to(at::kFloat);
}

at::Tensor glvq_shaped_lloyd_update(const GlvqShapedCodes& c, const at::Tensor& D, const at::Tensor& scale, int64_t gs,
                                    int64_t d, double ridge, const at::Tensor& G_prev) {
  const int64_t out = c.T.size(0), in = c.T.size(1), B = in / gs, np = gs / d;
  const at::Device dev = c.T.device();
  const at::Tensor s_col = scale.to(dev, at::kDouble).repeat_interleave(gs);  // [in]
  const at::Tensor Tu = (c.T.to(at::kDouble) / s_col).reshape({out, B, np, d});
  const at::Tensor Cw = c.C.to(at::kDouble).reshape({out, B, np, d});
  const at::Tensor Dd = D.to(dev, at::kDouble).reshape({B, np, d, d});
  at::Tensor G = at::empty({B, d, d}, at::TensorOptions().dtype(at::kDouble).device(dev));
  const at::Tensor eye = at::eye(d * d, G.options());
  for (int64_t g = 0; g < B; ++g) {
    throw_if_preempted("the shaped GLVQ Lloyd update");
    const at::Tensor Cg = Cw.select(1, g).permute({1, 0, 2});  // [np, out, d]
    const at::Tensor Tg = Tu.select(1, g).permute({1, 0, 2});
    const at::Tensor S = at::bmm(Cg.transpose(1, 2), Cg);  // [np, d, d]
    const at::Tensor R = at::bmm(Tg.transpose(1, 2), Cg);  // [np, d, d]
    const at::Tensor Dg = Dd.select(0, g);                  // [np, d, d]
    // vec(D G S) = (S^T kron D) vec(G) with column-major vec; S is symmetric.
    at::Tensor M = (S.unsqueeze(2).unsqueeze(4) * Dg.unsqueeze(1).unsqueeze(3)).sum(0).reshape({d * d, d * d});
    const at::Tensor rhs = at::bmm(Dg, R).sum(0).t().reshape({d * d, 1});
    M = M + eye * (ridge * M.diagonal().mean().item<double>() + 1e-300);
    at::Tensor Gg = at::linalg_solve(M, rhs).reshape({d, d}).t();
    // Row i of G is decoupled from the others when no vector's metric sees
    // coordinate i; the ridge alone would set it to 0.
    const at::Tensor unseen = (Dg.diagonal(0, 1, 2).sum(0) == 0).unsqueeze(1);  // [d, 1]
    Gg = at::where(unseen, G_prev.select(0, g).to(dev, at::kDouble), Gg);
    G.select(0, g).copy_(Gg);
  }
  return G.to(at::kFloat);
}

}  // namespace glvq
