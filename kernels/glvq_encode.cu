// Babai encode, one thread per d-vector; the float operations are those of
// glvq_encode_ref (kernels/glvq_math.h), so the codes are bit-identical. A narrower
// last group has fewer vectors per row; a padded last vector reads only its real
// weights and takes u = 0 for the rest, as the reference does.
#include "glvq_device.cuh"
#include "glvq_encode.cuh"

namespace glvq {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxDim = 64;

/// D > 0: the dimension at compile time (registers); D == 0: runtime dim <= kMaxDim.
template <int D>
__global__ void __launch_bounds__(kThreads) encode_kernel(GlvqLayout L, GlvqDeviceParams p, const float* __restrict__ W,
                                                          int64_t ldw, uint8_t* __restrict__ codes) {
  const int d = D > 0 ? D : L.dim;
  constexpr int DA = D > 0 ? D : kMaxDim;
  const int64_t g = blockIdx.y;
  extern __shared__ float Gi[];  // d*d
  for (int k = threadIdx.x; k < d * d; k += blockDim.x) Gi[k] = p.Ginv[g * d * d + k];
  __syncthreads();
  const int64_t V = L.group_vecs(g);
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= L.out * V) return;
  const int64_t r = idx / V, v = idx - r * V;
  const int64_t left = L.group_cols(g) - v * d;
  const int n = left < d ? int(left) : d;
  const int b = p.bits[g];
  const float s = p.scale[g], mu = p.mu[g], Lc = fp::compand_log(mu);
  const float* w = W + r * ldw + g * L.group_size + v * d;
  float u[DA];  // registers when D > 0 (loops below unroll fully), local memory otherwise
#pragma unroll
  for (int j = 0; j < d; ++j) u[j] = j < n ? fp::compand(w[j], s, mu, Lc) : 0.0f;
  uint8_t* out = codes + p.group_offsets[g] + idx * ((d * b + 7) >> 3);
  uint32_t acc = 0;
  int nb = 0, k = 0;
#pragma unroll
  for (int i = 0; i < d; ++i) {
    acc |= uint32_t(fp::round_code(dev::row_dot<D>(Gi + i * d, u, d), b)) << nb;
    nb += b;
    while (nb >= 8) {
      out[k++] = uint8_t(acc);
      acc >>= 8;
      nb -= 8;
    }
  }
  if (nb > 0) out[k] = uint8_t(acc);
}

template <int D>
cudaError_t launch(const GlvqLayout& L, const GlvqDeviceParams& p, const float* W, int64_t ldw, uint8_t* codes,
                   cudaStream_t stream) {
  const int64_t n = L.out * L.vecs_per_row();
  dim3 grid(unsigned((n + kThreads - 1) / kThreads), unsigned(L.groups()));
  const size_t smem = sizeof(float) * L.dim * L.dim;
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(encode_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  encode_kernel<D><<<grid, kThreads, smem, stream>>>(L, p, W, ldw, codes);
  return cudaGetLastError();
}

}  // namespace

cudaError_t glvq_encode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const float* W, int64_t ldw,
                               uint8_t* codes, cudaStream_t stream) {
  if (L.dim < 1 || L.dim > kMaxDim || L.group_size % L.dim || L.in < 1 || L.groups() > 65535)
    return cudaErrorInvalidValue;
  switch (L.dim) {
    case 4: return launch<4>(L, p, W, ldw, codes, stream);
    case 8: return launch<8>(L, p, W, ldw, codes, stream);
    case 16: return launch<16>(L, p, W, ldw, codes, stream);
    case 32: return launch<32>(L, p, W, ldw, codes, stream);
    default: return launch<0>(L, p, W, ldw, codes, stream);
  }
}

}  // namespace glvq
