#include "quant/glvq_shaped_cuda.h"

#include <algorithm>
#include <vector>

#include "common/error.h"
#include "common/preempt.h"
#include "quant/glvq_codebook.h"

#ifdef GLVQ_WITH_CUDA
#include "glvq_shaped.cuh"
#endif

namespace glvq {

#ifdef GLVQ_WITH_CUDA
namespace {

// Columns one kernel launch encodes with immediate feedback; the panel's error reaches
// the rest of its group as one GEMM, which keeps a whole-row group (group_size 0) from
// streaming the row through every vector's update.
constexpr int64_t kPanelCols = 128;

}  // namespace

bool glvq_shaped_cuda_built() { return true; }

GlvqShapedCodes glvq_shaped_encode_layer_cuda(const at::Tensor& Wp, int64_t gs, const GlvqShapedParams& p,
                                              const at::Tensor& F_full, bool inter, const at::Tensor& D,
                                              int candidates) {
  const at::Device dev = Wp.device();
  GLVQ_CHECK(dev.is_cuda(), "glvq_shaped_encode_layer_cuda needs a CUDA tensor, got one on {}", dev.str());
  const int64_t out = Wp.size(0), in = Wp.size(1), d = p.G.size(1), B = in / gs;
  GLVQ_ASSERT(in % gs == 0 && gs % d == 0 && d % kShapedBlock == 0 && p.G.size(0) == B);
  GLVQ_CHECK(d <= 64 && candidates >= 1 && candidates <= kMaxCandidates,
             "the shaped GLVQ GPU encoder takes dim <= 64 and 1..{} candidates (got dim {}, {} candidates)",
             kMaxCandidates, d, candidates);
  GlvqShapedCodes res;
  at::Tensor T = Wp.to(dev, at::kFloat).clone().contiguous();
  const auto opt = T.options();
  res.codes = at::empty({out, in / kShapedBlock}, opt.dtype(at::kLong));
  res.C = at::empty({out, in}, opt);
  res.W_hat = at::empty({out, in}, opt);
  const at::Tensor F = F_full.defined() ? F_full.to(dev, at::kFloat).contiguous() : at::Tensor();
  const at::Tensor G_cpu = p.G.to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor scale_cpu = p.scale.to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor bits_cpu = p.bits.to(at::kCPU, at::kLong).contiguous();
  const bool rescore = D.defined() && candidates > 1;
  const at::Tensor D_cpu = rescore ? D.to(at::kCPU, at::kDouble).contiguous() : at::Tensor();
  const int64_t panel = std::max<int64_t>(d, kPanelCols / d * d);
  for (int64_t g = 0; g < B; ++g) {
    throw_if_preempted("the shaped GLVQ search");
    const int64_t c0 = g * gs, c1 = c0 + gs;
    const float s = scale_cpu.data_ptr<float>()[g];
    const int bits = static_cast<int>(bits_cpu.data_ptr<int64_t>()[g]);
    GLVQ_CHECK(s > 0 && bits >= 1 && bits <= 8, "shaped GLVQ: group {} has scale {} and {} bits", g, s, bits);
    // G^-1 and M as the CPU reference forms them (glvq_shaped_ops.cpp), so both pick the same codes.
    const at::Tensor Gd = G_cpu.select(0, g).to(at::kDouble);
    const at::Tensor GG = at::stack({Gd.to(at::kFloat), at::linalg_inv(Gd).to(at::kFloat)}).to(dev).contiguous();
    at::Tensor M;
    if (rescore) {
      std::vector<at::Tensor> Ms;
      for (int64_t a = c0; a < c1; a += d) Ms.push_back(at::mm(at::mm(Gd.t(), D_cpu.select(0, a / d)), Gd));
      M = at::stack(Ms).to(dev).contiguous();
    }
    const GlvqShapedStages st = glvq_shaped_stages(bits);
    for (int64_t p0 = c0; p0 < c1; p0 += panel) {
      const int64_t p1 = std::min(p0 + panel, c1);
      GlvqShapedPanel a;
      a.rows = out;
      a.ld = in;
      a.p0 = p0;
      a.p1 = p1;
      a.d = static_cast<int>(d);
      a.G = GG.data_ptr<float>();
      a.Ginv = GG.data_ptr<float>() + d * d;
      a.scale = s;
      a.stages = st.count;
      for (int k = 0; k < 4; ++k) {
        a.book[k] = st.book[k];
        a.beta[k] = st.beta[k];
      }
      a.beam = glvq_shaped_beam(bits);
      a.candidates = candidates;
      a.M = rescore ? M.data_ptr<double>() + ((p0 - c0) / d) * d * d : nullptr;
      a.F = F.defined() ? F.data_ptr<float>() : nullptr;
      a.ldF = F.defined() ? F.size(1) : 0;
      a.T = T.data_ptr<float>();
      a.C = res.C.data_ptr<float>();
      a.W_hat = res.W_hat.data_ptr<float>();
      a.codes = res.codes.data_ptr<int64_t>();
      const cudaError_t rc = glvq_shaped_encode_panel(a, nullptr);
      GLVQ_CHECK(rc == cudaSuccess, "the shaped GLVQ encode kernel failed on {}: {}", dev.str(),
                 cudaGetErrorString(rc));
      if (F.defined() && p1 < c1) {
        const at::Tensor e = T.slice(1, p0, p1) - res.W_hat.slice(1, p0, p1);
        T.slice(1, p1, c1).sub_(at::mm(e, F.slice(0, p0, p1).slice(1, p1, c1)));
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
#else
bool glvq_shaped_cuda_built() { return false; }

GlvqShapedCodes glvq_shaped_encode_layer_cuda(const at::Tensor&, int64_t, const GlvqShapedParams&, const at::Tensor&,
                                              bool, const at::Tensor&, int) {
  GLVQ_FAIL("this glvq was built without CUDA kernels; use device: cpu");
}
#endif

}  // namespace glvq
