// The fused GLVQ linear of the CUDA decoder, its shared scratch memory and the
// dense fp16 fallback.
#include "common/error.h"
#include "gen/cuda/cuda_state.h"
#include "glvq_gemv.cuh"
#include "glvq_gemv_shaped.cuh"
#include "glvq_orth.cuh"
#include "quant/glvq_codec.h"
#include "quant/glvq_hadamard.h"

#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <tuple>

namespace glvq {
namespace {

double attr_of(const QuantizedLinear& q, const char* name, double dflt, bool required) {
  const auto it = q.attrs.find(name);
  GLVQ_CHECK(it != q.attrs.end() || !required, "glvq layer [{}, {}] lacks attribute '{}': the checkpoint is damaged",
             q.out, q.in, name);
  return it == q.attrs.end() ? dflt : it->second;
}

const at::Tensor& array_of(const QuantizedLinear& q, const char* name, int64_t numel) {
  const auto it = q.arrays.find(name);
  GLVQ_CHECK(it != q.arrays.end() && it->second.numel() == numel,
             "glvq layer [{}, {}]: array '{}' is missing or not of {} values: the checkpoint is damaged", q.out, q.in,
             name, numel);
  return it->second;
}

/// The incoherence transform's DCT factor for size n (quant/glvq_hadamard.h), on the device.
const OrthTable& orth_table(Decoder::CudaState& st, int64_t n) {
  auto it = st.orth.find(n);
  if (it != st.orth.end()) return it->second;
  OrthTable t;
  int64_t p = 1;
  while (n % (2 * p) == 0) p *= 2;
  t.m = n / p;
  if (t.m > 1) {
    std::vector<float> c(static_cast<size_t>(t.m * t.m));
    const double pi = std::acos(-1.0);
    for (int64_t k = 0; k < t.m; ++k) {
      const double a = std::sqrt((k == 0 ? 1.0 : 2.0) / double(t.m));
      for (int64_t j = 0; j < t.m; ++j) c[k * t.m + j] = float(a * std::cos(pi * (j + 0.5) * k / double(t.m)));
    }
    t.C = at::from_blob(c.data(), {t.m * t.m}, at::TensorOptions().dtype(at::kFloat)).clone().to(st.device());
  }
  return st.orth.emplace(n, std::move(t)).first->second;
}

/// GLVQ_SHAPED_GEMV=2 runs the shaped GEMV's version 2 (next chunk's codes loaded ahead),
/// which has not run on a GPU yet (docs/BENCH.md); anything else the measured version 1.
int shaped_version() {
  const char* v = std::getenv("GLVQ_SHAPED_GEMV");
  return v && std::string(v) == "2" ? 2 : 1;
}

const __half* hptr(const at::Tensor& t) { return reinterpret_cast<const __half*>(t.data_ptr<at::Half>()); }
__half* hptr_mut(at::Tensor& t) { return reinterpret_cast<__half*>(t.data_ptr<at::Half>()); }

/// A GLVQ layer run by the fused decode-GEMV: the box code through the tensor-core path
/// on its mma layout (repacked at load), the shaped code straight from the checkpoint's
/// codes (kernels/glvq_gemv_shaped.cuh); the incoherence transforms around either.
class FusedGlvqLinear : public GenLinear {
 public:
  FusedGlvqLinear(const QuantizedLinear& q, const GlvqLayout& L, Decoder::CudaState& st) : L_(L) {
    const at::Device dev = st.device();
    const int64_t B = L.groups(), d = L.dim;
    const at::Tensor bits = array_of(q, "bits", B).contiguous();
    const std::vector<int64_t> off = glvq_group_offsets(L, bits.data_ptr<uint8_t>());
    const at::Tensor codes = array_of(q, "codes", off.back()).contiguous();
    if (L.code == GlvqCode::shaped) {
      const cudaError_t e = glvq_gemv_shaped_prepare();  // before the decode step's graph capture
      GLVQ_CHECK(e == cudaSuccess, "loading the shaped codebooks on the GPU failed: {}", cudaGetErrorString(e));
      const std::vector<int32_t> chunks = glvq_shaped_gemv_chunks(L, bits.data_ptr<uint8_t>(), off.data());
      packed_ = codes.to(dev);
      coff_ = at::tensor(at::ArrayRef<int64_t>(off), at::TensorOptions().dtype(at::kLong)).to(dev);
      chunks_ = at::tensor(at::ArrayRef<int32_t>(chunks), at::TensorOptions().dtype(at::kInt)).to(dev);
      S_.L = L;
      S_.codes = packed_.data_ptr<uint8_t>();
      S_.chunks = chunks_.data_ptr<int32_t>();
      S_.nchunks = int64_t(chunks.size() / 4);
      p_.group_offsets = coff_.data_ptr<int64_t>();
      if (shaped_version() == 2) {
        const std::vector<int32_t> work = glvq_shaped_gemv_work(L, bits.data_ptr<uint8_t>(), off.data());
        work_ = at::tensor(at::ArrayRef<int32_t>(work), at::TensorOptions().dtype(at::kInt)).to(dev);
        S_.work = work_.data_ptr<int32_t>();
        S_.max_bits = glvq_shaped_max_bits(L, bits.data_ptr<uint8_t>());
        tune_.version = 2;
      }
      bytes_ = packed_.numel() + chunks_.numel() * 4 + coff_.numel() * 8;
    } else {
      plan_ = glvq_mma_plan(L.out, L.in, L.dim, L.group_size, bits.data_ptr<uint8_t>());
      at::Tensor packed = at::empty({plan_.bytes()}, at::TensorOptions().dtype(at::kByte));
      glvq_mma_repack(plan_, bits.data_ptr<uint8_t>(), codes.data_ptr<uint8_t>(), packed.data_ptr<uint8_t>());
      packed_ = packed.to(dev);
      coff_ = at::tensor(at::ArrayRef<int64_t>(plan_.chunk_offsets), at::TensorOptions().dtype(at::kLong)).to(dev);
      cbits_ = at::tensor(at::ArrayRef<uint8_t>(plan_.chunk_bits), at::TensorOptions().dtype(at::kByte)).to(dev);
      M_ = glvq_mma_device(plan_, packed_.data_ptr<uint8_t>(), coff_.data_ptr<int64_t>(), cbits_.data_ptr<uint8_t>());
      bytes_ = plan_.bytes();
    }
    G_ = array_of(q, "G", B * d * d).to(at::kFloat).contiguous().to(dev);
    scale_ = array_of(q, "scale", B).to(at::kFloat).contiguous().to(dev);
    mu_ = array_of(q, "mu", B).to(at::kFloat).contiguous().to(dev);
    bits_ = bits.to(dev);
    p_.bits = bits_.data_ptr<uint8_t>();
    p_.scale = scale_.data_ptr<float>();
    p_.mu = mu_.data_ptr<float>();
    p_.G = G_.data_ptr<float>();
    ws_ = st.workspace(L);
    bytes_ += (G_.numel() + scale_.numel()) * 4;
    incoh_ = attr_of(q, "incoherence", 0, true) != 0;
    if (incoh_) {
      s_in_ = glvq_unpack_signs(array_of(q, "signs_in", (L.in + 7) / 8), L.in).to(dev);
      s_out_ = glvq_unpack_signs(array_of(q, "signs_out", (L.out + 7) / 8), L.out).to(dev);
      t_in_ = &orth_table(st, L.in);
      t_out_ = &orth_table(st, L.out);
      bytes_ += (L.in + L.out) * 4;
    }
  }

  at::Tensor forward(const at::Tensor& x_in) override {
    GLVQ_ASSERT(x_in.dim() == 2 && x_in.size(1) == L_.in && x_in.scalar_type() == at::kHalf && x_in.is_cuda());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
    const int64_t rows = x_in.size(0);
    at::Tensor x = x_in.contiguous();
    if (incoh_) x = orth(x, L_.in, *t_in_, s_in_, false, stream);
    at::Tensor y = at::empty({rows, L_.out}, x.options());
    for (int64_t r0 = 0; r0 < rows; r0 += kMaxRows) {
      const int nb = int(std::min<int64_t>(kMaxRows, rows - r0));
      const cudaError_t e =
          L_.code == GlvqCode::shaped
              ? glvq_gemv_shaped_launch(S_, p_, hptr(x) + r0 * L_.in, L_.in, hptr_mut(y) + r0 * L_.out, L_.out, nb,
                                        ws_->ws, stream, tune_)
              : glvq_gemv_mma_launch(M_, p_, hptr(x) + r0 * L_.in, L_.in, hptr_mut(y) + r0 * L_.out, L_.out, nb,
                                     ws_->ws, stream);
      GLVQ_CHECK(e == cudaSuccess, "fused GLVQ GEMV [{}, {}] failed: {}", L_.out, L_.in, cudaGetErrorString(e));
    }
    if (incoh_) y = orth(y, L_.out, *t_out_, s_out_, true, stream);
    return y;
  }
  int64_t weight_bytes() const override { return bytes_; }
  std::string kind() const override { return L_.code == GlvqCode::shaped ? "glvq shaped fused" : "glvq fused"; }

 private:
  static constexpr int64_t kMaxRows = 16;  // the GEMV's largest batch

  static at::Tensor orth(const at::Tensor& x, int64_t n, const OrthTable& t, const at::Tensor& signs, bool transpose,
                         cudaStream_t stream) {
    at::Tensor y = at::empty_like(x);
    const cudaError_t e = glvq_orth_launch(hptr(x), n, hptr_mut(y), n, int(x.size(0)), n, t.m,
                                           signs.data_ptr<float>(), t.m > 1 ? t.C.data_ptr<float>() : nullptr,
                                           transpose, stream);
    GLVQ_CHECK(e == cudaSuccess, "incoherence transform of size {} failed: {}", n, cudaGetErrorString(e));
    return y;
  }

  GlvqLayout L_;
  GlvqMmaPlan plan_;
  GlvqMmaDevice M_{};       // box code
  GlvqShapedDevice S_{};    // shaped code
  GlvqShapedTuning tune_{};
  GlvqDeviceParams p_{};
  at::Tensor packed_, coff_, cbits_, chunks_, work_, G_, scale_, mu_, bits_, s_in_, s_out_;
  std::shared_ptr<GemvWorkspace> ws_;
  bool incoh_ = false;
  const OrthTable* t_in_ = nullptr;
  const OrthTable* t_out_ = nullptr;
  int64_t bytes_ = 0;
};

}  // namespace

std::shared_ptr<GemvWorkspace> Decoder::CudaState::workspace(const GlvqLayout& L) {
  const auto key = std::make_tuple(L.out, L.in, L.group_size, L.dim);  // d: the padded width of xt
  auto it = ws.find(key);
  if (it != ws.end()) return it->second;
  auto w = std::make_shared<GemvWorkspace>();
  // 256-byte alignment: the caching allocator hands out 512-byte aligned blocks
  w->buf = at::empty({int64_t(glvq_gemv_workspace_bytes(L, 16))}, at::TensorOptions().dtype(at::kByte).device(device()));
  const cudaError_t e =
      glvq_gemv_workspace_init(L, 16, w->buf.data_ptr(), &w->ws, c10::cuda::getCurrentCUDAStream().stream());
  GLVQ_CHECK(e == cudaSuccess, "GEMV workspace for [{}, {}]: {}", L.out, L.in, cudaGetErrorString(e));
  ws.emplace(key, w);
  return w;
}

std::string cuda_fused_unsupported(const QuantizedLinear& q, GlvqLayout* L) {
  if (q.method != "glvq") return "method " + q.method;
  L->out = q.out;
  L->in = q.in;
  L->dim = int(attr_of(q, "dim", 0, true));
  L->group_size = int(attr_of(q, "group_size", 0, true));
  L->code = attr_of(q, "code", 0, false) != 0 ? GlvqCode::shaped : GlvqCode::box;
  GLVQ_CHECK(L->dim >= 1 && L->group_size >= L->dim && L->group_size % L->dim == 0,
             "glvq layer [{}, {}] has dim {} and group_size {}, which do not fit: the checkpoint is damaged", q.out,
             q.in, L->dim, L->group_size);
  const at::Tensor bits = array_of(q, "bits", L->groups()).contiguous();
  const at::Tensor mu = array_of(q, "mu", L->groups()).to(at::kFloat).contiguous();
  std::string why;
  if (L->code == GlvqCode::shaped) {
    why = glvq_gemv_shaped_unsupported(*L, bits.data_ptr<uint8_t>(), mu.data_ptr<float>());
  } else {
    why = glvq_mma_unsupported(q.out, q.in, L->dim, L->group_size, bits.data_ptr<uint8_t>(), mu.data_ptr<float>());
  }
  if (!why.empty()) return why;
  if (attr_of(q, "incoherence", 0, true) != 0 && std::max(q.in, q.out) > glvq_orth_max_n())
    return "incoherence transform too large for shared memory";
  return "";
}

std::unique_ptr<GenLinear> cuda_make_linear(const QuantizedLinear& q, bool dense, Decoder::CudaState& st) {
  GlvqLayout L;
  if (!dense && cuda_fused_unsupported(q, &L).empty()) return std::make_unique<FusedGlvqLinear>(q, L, st);
  // dequantize_on's CUDA decode runs on the legacy default stream, which does not order with the
  // decoder's (non-blocking) stream: wait for it before the conversion reads W.
  const at::Tensor W = dequantize_on(q, st.device());
  GLVQ_CHECK(cudaDeviceSynchronize() == cudaSuccess, "decoding layer [{}, {}] on the GPU failed", q.out, q.in);
  return std::make_unique<DenseLinear>(W.to(at::kHalf).contiguous());
}

}  // namespace glvq
