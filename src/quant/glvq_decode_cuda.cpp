#include "quant/glvq_decode_cuda.h"

#include "common/error.h"

#ifdef GLVQ_WITH_CUDA
#include "glvq_decode.cuh"
#endif

namespace glvq {

#ifdef GLVQ_WITH_CUDA
bool glvq_cuda_decode_built() { return true; }

at::Tensor glvq_decode_cuda(const GlvqLayout& L, const at::Tensor& bits, const at::Tensor& scale, const at::Tensor& mu,
                            const at::Tensor& G, const at::Tensor& Ginv, const std::vector<int64_t>& offsets,
                            const at::Tensor& codes, const at::Device& device) {
  GLVQ_CHECK(device.is_cuda(), "glvq_decode_cuda needs a CUDA device, got {}", device.str());
  const int64_t B = L.groups(), d = L.dim;
  GLVQ_CHECK(bits.numel() == B && scale.numel() == B && mu.numel() == B && G.numel() == B * d * d &&
                 Ginv.numel() == B * d * d && static_cast<int64_t>(offsets.size()) == B + 1 &&
                 codes.numel() >= offsets.back(),
             "glvq_decode_cuda: parameters do not match the layout [{}, {}] with {} groups of dim {}", L.out, L.in, B,
             d);
  auto on = [&](const at::Tensor& t, at::ScalarType st) { return t.to(device, st).contiguous(); };
  const at::Tensor bits_d = on(bits, at::kByte), scale_d = on(scale, at::kFloat), mu_d = on(mu, at::kFloat);
  const at::Tensor G_d = on(G, at::kFloat), Ginv_d = on(Ginv, at::kFloat), codes_d = on(codes, at::kByte);
  const at::Tensor off_d =
      at::tensor(at::ArrayRef<int64_t>(offsets), at::TensorOptions().dtype(at::kLong)).to(device).contiguous();
  GlvqDeviceParams p;
  p.bits = bits_d.data_ptr<uint8_t>();
  p.scale = scale_d.data_ptr<float>();
  p.mu = mu_d.data_ptr<float>();
  p.G = G_d.data_ptr<float>();
  p.Ginv = Ginv_d.data_ptr<float>();
  p.group_offsets = off_d.data_ptr<int64_t>();
  at::Tensor W = at::empty({L.out, L.in}, at::TensorOptions().dtype(at::kFloat).device(device));
  // The kernel runs on the legacy default stream, while W and the uploads above come from the
  // caching allocator under the caller's stream, which may be a non-blocking one (glvq-generate's):
  // the two do not wait for each other. Before the launch, earlier work of the caller's stream may
  // still use that memory; after it, the uploads are freed on return (the allocator can hand them
  // out again) and the caller reads W. So the device is synchronised on both sides (a load-time
  // path). Without it glvq-bench's fp16 baseline of a shaped 7B checkpoint died with an illegal
  // address (2026-12-07).
  cudaError_t rc = cudaDeviceSynchronize();
  GLVQ_CHECK(rc == cudaSuccess, "the GPU failed before decoding layer [{}, {}]: {}", L.out, L.in, cudaGetErrorString(rc));
  rc = glvq_decode_launch(L, p, codes_d.data_ptr<uint8_t>(), W.data_ptr<float>(), L.in, nullptr);
  if (rc == cudaSuccess) rc = cudaDeviceSynchronize();
  GLVQ_CHECK(rc == cudaSuccess, "GLVQ decode kernel failed on {}: {}", device.str(), cudaGetErrorString(rc));
  return W;
}
#else
bool glvq_cuda_decode_built() { return false; }

at::Tensor glvq_decode_cuda(const GlvqLayout&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, const std::vector<int64_t>&, const at::Tensor&,
                            const at::Device&) {
  GLVQ_FAIL("this glvq was built without CUDA kernels; use device: cpu");
}
#endif

}  // namespace glvq
