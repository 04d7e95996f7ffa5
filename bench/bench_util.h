#pragma once
// Timing and data helpers shared by the GLVQ benchmarks (CUDA builds only).
#include <cuda_runtime.h>  // the typed cudaMalloc overloads

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "common/cuda_check.h"

namespace glvq {
namespace bench {

/// Fast deterministic bytes/floats for large random layers (xorshift64*).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
  float normal() {                                                        // Irwin-Hall(4), var 1
    return (uniform() + uniform() + uniform() + uniform() - 2.0f) * 1.7320508f;
  }
  void fill_bytes(std::vector<uint8_t>& v) {
    size_t i = 0;
    for (; i + 8 <= v.size(); i += 8) {
      const uint64_t x = next();
      for (int k = 0; k < 8; ++k) v[i + k] = uint8_t(x >> (8 * k));
    }
    for (; i < v.size(); ++i) v[i] = uint8_t(next());
  }
};

/// Median over `trials` of the mean time of `iters` calls of f(i), in microseconds,
/// measured with CUDA events on `stream` after `warmup` calls.
template <typename F>
double time_us(F&& f, cudaStream_t stream, int iters, int trials = 5, int warmup = 5) {
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  int call = 0;
  for (int i = 0; i < warmup; ++i) f(call++);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> t;
  for (int k = 0; k < trials; ++k) {
    CUDA_CHECK(cudaEventRecord(a, stream));
    for (int i = 0; i < iters; ++i) f(call++);
    CUDA_CHECK(cudaEventRecord(b, stream));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(1000.0 * ms / iters);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

/// Like time_us, but the `iters` calls are captured once into a CUDA graph and the
/// graph is replayed: no host launch overhead, shorter gaps between kernels (what a
/// decoder that replays a captured step sees).
template <typename F>
double time_graph_us(F&& f, cudaStream_t stream, int iters, int trials = 5) {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    for (int i = 0; i < iters; ++i) f(i);
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    throw;
  }
  CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double us = time_us([&](int) { CUDA_CHECK(cudaGraphLaunch(exec, stream)); }, stream, 1, trials, 2);
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  return us / iters;
}

/// Copies of one device buffer, enough that cycling through them never hits in L2.
struct Rotation {
  std::vector<void*> bufs;
  size_t bytes = 0;
  Rotation(const void* src, size_t nbytes, size_t min_total) : bytes(nbytes) {
    const size_t n = std::max<size_t>(2, (min_total + nbytes - 1) / nbytes);
    for (size_t i = 0; i < n; ++i) {
      void* p = nullptr;
      CUDA_CHECK(cudaMalloc(&p, nbytes));
      CUDA_CHECK(cudaMemcpy(p, src, nbytes, cudaMemcpyDeviceToDevice));
      bufs.push_back(p);
    }
  }
  Rotation(const Rotation&) = delete;
  Rotation& operator=(const Rotation&) = delete;
  ~Rotation() {
    for (void* p : bufs) cudaFree(p);
  }
  template <typename T>
  T* at(int i) const {
    return static_cast<T*>(bufs[size_t(i) % bufs.size()]);
  }
};

/// A random fp16 [out, in] matrix of magnitude ~2^-7 (the cuBLAS baselines' weights) on the
/// device, drawn from RNG; the caller frees it.
inline void* random_fp16_device(int64_t out, int64_t in, Rng& rng) {
  std::vector<uint8_t> wb(size_t(out) * in * 2);
  rng.fill_bytes(wb);
  for (size_t i = 0; i < wb.size(); i += 2) {
    const uint16_t v = uint16_t(((wb[i] | (wb[i + 1] << 8)) & 0x83FF) | 0x2000);
    wb[i] = uint8_t(v);
    wb[i + 1] = uint8_t(v >> 8);
  }
  void* w = nullptr;
  CUDA_CHECK(cudaMalloc(&w, wb.size()));
  CUDA_CHECK(cudaMemcpy(w, wb.data(), wb.size(), cudaMemcpyHostToDevice));
  return w;
}

inline size_t l2_bytes() {
  int dev = 0, l2 = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return size_t(l2);
}

inline void print_device() {
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  CUDA_CHECK(cudaGetDeviceProperties(&p, dev));
  std::printf("device: %s, %d SMs, L2 %.0f MB, %.0f GB\n", p.name, p.multiProcessorCount, p.l2CacheSize / 1e6,
              p.totalGlobalMem / 1e9);
}

/// Device-to-device copy bandwidth in GB/s counting bytes read plus bytes written.
inline double copy_gbps(size_t bytes, cudaStream_t stream) {
  void *a = nullptr, *b = nullptr;
  CUDA_CHECK(cudaMalloc(&a, bytes));
  CUDA_CHECK(cudaMalloc(&b, bytes));
  CUDA_CHECK(cudaMemset(a, 1, bytes));
  const double us = time_us([&](int) { CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream)); },
                            stream, 10);
  CUDA_CHECK(cudaFree(a));
  CUDA_CHECK(cudaFree(b));
  return 2.0 * double(bytes) / us / 1e3;
}

}  // namespace bench
}  // namespace glvq
