// Incoherence transform of activation rows: one block per row, the row in shared memory.
#include "glvq_orth.cuh"

namespace glvq {
namespace {

constexpr int kOrthThreads = 1024;

// forward:   s = D x; s = (I_m (x) H_p) s; y = (C (x) I_p) s / sqrt(p)
// transpose: s = (C^T (x) I_p) x; s = (I_m (x) H_p) s; y = D s / sqrt(p)
// (the two Kronecker factors commute, so either order gives K = C (x) H.)
__global__ void __launch_bounds__(kOrthThreads) orth_kernel(const __half* __restrict__ X, int64_t ldx,
                                                             __half* __restrict__ Y, int64_t ldy, int64_t n,
                                                             int64_t m, const float* __restrict__ signs,
                                                             const float* __restrict__ C, bool transpose) {
  extern __shared__ float s[];
  const int64_t p = n / m;
  const __half* x = X + int64_t(blockIdx.x) * ldx;
  __half* y = Y + int64_t(blockIdx.x) * ldy;
  if (!transpose) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s[i] = __half2float(x[i]) * signs[i];
  } else if (m == 1) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s[i] = __half2float(x[i]);
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const int64_t a = i / p, b = i - a * p;
      float acc = 0.0f;
      for (int64_t a2 = 0; a2 < m; ++a2) acc = fmaf(C[a2 * m + a], __half2float(x[a2 * p + b]), acc);
      s[i] = acc;
    }
  }
  __syncthreads();
  // Walsh-Hadamard butterflies inside each segment of p: pairs (i0, i0 + h) in blocks of 2h
  const int64_t half_n = n / 2, half_p = p / 2;
  for (int64_t h = 1; h < p; h *= 2) {
    for (int64_t k = threadIdx.x; k < half_n; k += blockDim.x) {
      const int64_t seg = k / half_p, j = k - seg * half_p;
      const int64_t i0 = seg * p + (j / h) * 2 * h + (j % h), i1 = i0 + h;
      const float a = s[i0], b = s[i1];
      s[i0] = a + b;
      s[i1] = a - b;
    }
    __syncthreads();
  }
  const float scale = rsqrtf(float(p));
  if (transpose) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) y[i] = __float2half_rn(s[i] * scale * signs[i]);
  } else if (m == 1) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) y[i] = __float2half_rn(s[i] * scale);
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const int64_t a = i / p, b = i - a * p;
      float acc = 0.0f;
      for (int64_t a2 = 0; a2 < m; ++a2) acc = fmaf(C[a * m + a2], s[a2 * p + b], acc);
      y[i] = __float2half_rn(acc * scale);
    }
  }
}

int max_smem_optin() {
  int dev = 0, v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
    return 48 * 1024;
  return v;
}

}  // namespace

int64_t glvq_orth_max_n() {
  static const int smem = max_smem_optin();
  return smem / int64_t(sizeof(float));
}

cudaError_t glvq_orth_launch(const __half* X, int64_t ldx, __half* Y, int64_t ldy, int rows, int64_t n, int64_t m,
                             const float* signs, const float* C, bool transpose, cudaStream_t stream) {
  if (rows < 0 || n < 1 || m < 1 || n % m || ((n / m) & (n / m - 1)) || (m > 1 && !C) || ldx < n || ldy < n ||
      n > glvq_orth_max_n() || static_cast<const void*>(X) == static_cast<const void*>(Y))
    return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const size_t smem = size_t(n) * sizeof(float);
  static bool raised = false;  // once per process: the attribute is the device maximum
  if (!raised) {
    const cudaError_t e =
        cudaFuncSetAttribute(orth_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(glvq_orth_max_n() * 4));
    if (e != cudaSuccess) return e;
    raised = true;
  }
  orth_kernel<<<unsigned(rows), kOrthThreads, smem, stream>>>(X, ldx, Y, ldy, n, m, signs, C, transpose);
  return cudaGetLastError();
}

}  // namespace glvq
