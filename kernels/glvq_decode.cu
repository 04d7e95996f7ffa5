// Decode, one thread per d-vector: unpack, u' = G (z + 1/2) with the reference's fma
// order, inverse companding, one 16-byte store per 16 output bytes where aligned.
// A narrower last group (quant/glvq_codec.h) has fewer vectors per row; its padded
// last vector, if any, stores only its real weights (scalar stores).
#include <cstring>
#include <type_traits>

#include "glvq_decode.cuh"
#include "glvq_device.cuh"
#include "glvq_shaped.cuh"

namespace glvq {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxDim = 64;

template <typename T, int D>
__global__ void __launch_bounds__(kThreads) decode_kernel(GlvqLayout L, GlvqDeviceParams p,
                                                          const uint8_t* __restrict__ codes, T* __restrict__ W,
                                                          int64_t ldw, bool vec_store) {
  const int d = D > 0 ? D : L.dim;
  constexpr int DA = D > 0 ? D : kMaxDim;
  const int64_t g = blockIdx.y;
  extern __shared__ float Gs[];  // d*d
  for (int k = threadIdx.x; k < d * d; k += blockDim.x) Gs[k] = p.G[g * d * d + k];
  __syncthreads();
  const int64_t V = L.group_vecs(g);  // gs / d, fewer in a narrower last group
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= L.out * V) return;
  const int64_t r = idx / V, v = idx - r * V;
  const int64_t left = L.group_cols(g) - v * d;
  const int n = left < d ? int(left) : d;  // < d: the padded last vector
  const int b = p.bits[g];
  const float s = p.scale[g], mu = p.mu[g];
  const uint8_t* src = codes + p.group_offsets[g] + idx * ((d * b + 7) >> 3);
  float t[DA];
  dev::load_code_values<D>(src, d, b, t);
  T o[DA];
  if constexpr (std::is_same<T, float>::value) {
    const float Lc = fp::compand_log(mu);  // exact path: the reference's operations
#pragma unroll
    for (int i = 0; i < d; ++i) o[i] = fp::expand(dev::row_dot<D>(Gs + i * d, t, d), s, mu, Lc);
  } else {
    const dev::ExpandConst ec = dev::expand_const(s, mu);
#pragma unroll
    for (int i = 0; i < d; ++i) o[i] = dev::from_float<T>(dev::fast_expand(dev::row_dot<D>(Gs + i * d, t, d), ec));
  }
  T* dst = W + r * ldw + g * L.group_size + v * d;
  if constexpr (D > 0 && (D * sizeof(T)) % 16 == 0) {
    if (vec_store && n == D) {
      constexpr int per = 16 / sizeof(T);
#pragma unroll
      for (int q = 0; q < D / per; ++q) {
        uint4 pk;
        memcpy(&pk, &o[q * per], 16);
        *reinterpret_cast<uint4*>(dst + q * per) = pk;
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < d; ++i)
    if (i < n) dst[i] = o[i];
}

template <typename T, int D>
cudaError_t launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, T* W, int64_t ldw,
                   cudaStream_t stream) {
  const int64_t n = L.out * L.vecs_per_row();
  dim3 grid(unsigned((n + kThreads - 1) / kThreads), unsigned(L.groups()));
  const size_t smem = sizeof(float) * L.dim * L.dim;
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(decode_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  const bool vec = reinterpret_cast<uintptr_t>(W) % 16 == 0 && (ldw * sizeof(T)) % 16 == 0;
  decode_kernel<T, D><<<grid, kThreads, smem, stream>>>(L, p, codes, W, ldw, vec);
  return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, T* W, int64_t ldw,
                     cudaStream_t stream) {
  if (L.code == GlvqCode::shaped) return glvq_shaped_decode_launch(L, p, codes, W, ldw, stream);
  if (L.dim < 1 || L.dim > kMaxDim || L.group_size % L.dim || L.in < 1 || L.groups() > 65535 || ldw < L.in)
    return cudaErrorInvalidValue;
  switch (L.dim) {
    case 4: return launch<T, 4>(L, p, codes, W, ldw, stream);
    case 8: return launch<T, 8>(L, p, codes, W, ldw, stream);
    case 16: return launch<T, 16>(L, p, codes, W, ldw, stream);
    case 32: return launch<T, 32>(L, p, codes, W, ldw, stream);
    default: return launch<T, 0>(L, p, codes, W, ldw, stream);
  }
}

}  // namespace

cudaError_t glvq_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, float* W,
                               int64_t ldw, cudaStream_t stream) {
  return dispatch(L, p, codes, W, ldw, stream);
}
cudaError_t glvq_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes, __half* W,
                               int64_t ldw, cudaStream_t stream) {
  return dispatch(L, p, codes, W, ldw, stream);
}
cudaError_t glvq_decode_launch(const GlvqLayout& L, const GlvqDeviceParams& p, const uint8_t* codes,
                               __nv_bfloat16* W, int64_t ldw, cudaStream_t stream) {
  return dispatch(L, p, codes, W, ldw, stream);
}

}  // namespace glvq
