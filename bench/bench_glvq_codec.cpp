// Encode and decode bandwidth of the GLVQ kernels against a device-to-device copy in
// the same run. GB/s counts the fewest bytes each operation must move through device
// memory: decode = codes read + W_hat written; encode = W (float) read + codes written;
// copy = bytes read + bytes written. Per-group parameters are counted too (tiny).
//   bench_glvq_codec [out in]      (default 8192 28672, a Llama-2-70B down_proj^T shape)
#ifdef GLVQ_WITH_CUDA
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <string>

#include "bench_util.h"
#include "glvq_decode.cuh"
#include "glvq_encode.cuh"
#include "quant/glvq_codec.h"

using namespace glvq;

namespace {

struct DevParams {
  GlvqDeviceParams p;
  std::vector<void*> owned;
  template <typename T>
  T* up(const std::vector<T>& h) {
    void* d = nullptr;
    CUDA_CHECK(cudaMalloc(&d, h.size() * sizeof(T)));
    CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    owned.push_back(d);
    return static_cast<T*>(d);
  }
  ~DevParams() {
    for (void* d : owned) cudaFree(d);
  }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const int64_t out = argc > 2 ? std::atoll(argv[1]) : 8192, in = argc > 2 ? std::atoll(argv[2]) : 28672;
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreate(&st));
    bench::print_device();
    const double copy = bench::copy_gbps(size_t(1) << 30, st);
    std::printf("device-to-device copy (cudaMemcpyAsync, 1 GiB): %.0f GB/s (read + write)\n", copy);
    std::printf("layer [%lld, %lld], group_size 128; GB/s = minimum bytes moved / time; %% of copy\n",
                (long long)out, (long long)in);
    std::printf("%-8s %4s %3s %5s %10s %9s %8s %7s\n", "op", "d", "b", "mu", "us", "GB/s", "%copy", "Gw/s");
    bench::Rng rng(1);
    // one float W shared by all configurations: N(0, 0.02)
    std::vector<float> Wh(size_t(out) * in);
    for (auto& w : Wh) w = 0.02f * rng.normal();
    float* Wd = nullptr;
    CUDA_CHECK(cudaMalloc(&Wd, Wh.size() * 4));
    CUDA_CHECK(cudaMemcpy(Wd, Wh.data(), Wh.size() * 4, cudaMemcpyHostToDevice));
    __half* Wo = nullptr;
    float* Wf = nullptr;
    CUDA_CHECK(cudaMalloc(&Wo, Wh.size() * 2));
    CUDA_CHECK(cudaMalloc(&Wf, Wh.size() * 4));
    for (int d : {8, 32}) {
      for (int b : {2, 3}) {
        for (float mu : {0.0f, 255.0f}) {
          GlvqLayout L{out, in, d, 128};
          const int64_t G = L.groups();
          std::vector<uint8_t> bits(G, uint8_t(b));
          std::vector<float> scale(G, 0.04f), mus(G, mu), Gm(G * d * d), Gi(G * d * d);
          const float step = 2.0f / float(1 << b);
          for (int64_t g = 0; g < G; ++g)
            for (int i = 0; i < d; ++i)
              for (int j = 0; j < d; ++j) {
                Gm[(g * d + i) * d + j] = i == j ? step : 0.0f;
                Gi[(g * d + i) * d + j] = i == j ? 1.0f / step : 0.0f;
              }
          const std::vector<int64_t> off = glvq_group_offsets(L, bits.data());
          DevParams dp;
          dp.p.bits = dp.up(bits);
          dp.p.scale = dp.up(scale);
          dp.p.mu = dp.up(mus);
          dp.p.G = dp.up(Gm);
          dp.p.Ginv = dp.up(Gi);
          dp.p.group_offsets = dp.up(off);
          uint8_t* codes = nullptr;
          CUDA_CHECK(cudaMalloc(&codes, off.back()));
          const double param_bytes = double(G) * (2.0 * d * d * 4 + 9 + 8);
          const double n_w = double(out) * in;
          auto row = [&](const char* op, double us, double bytes) {
            const double gbps = bytes / us / 1e3;
            std::printf("%-8s %4d %3d %5.0f %10.1f %9.0f %7.0f%% %7.1f\n", op, d, b, mu, us, gbps, 100.0 * gbps / copy,
                        n_w / us / 1e3);
          };
          const double enc = bench::time_us(
              [&](int) { CUDA_CHECK(glvq_encode_launch(L, dp.p, Wd, in, codes, st)); }, st, 5, 3, 2);
          row("encode", enc, n_w * 4 + off.back() + param_bytes);
          const double dec16 = bench::time_us(
              [&](int) { CUDA_CHECK(glvq_decode_launch(L, dp.p, codes, Wo, in, st)); }, st, 10, 5, 2);
          row("dec-f16", dec16, off.back() + n_w * 2 + param_bytes);
          const double dec32 = bench::time_us(
              [&](int) { CUDA_CHECK(glvq_decode_launch(L, dp.p, codes, Wf, in, st)); }, st, 5, 3, 2);
          row("dec-f32", dec32, off.back() + n_w * 4 + param_bytes);
          CUDA_CHECK(cudaFree(codes));
        }
      }
    }
    CUDA_CHECK(cudaFree(Wd));
    CUDA_CHECK(cudaFree(Wo));
    CUDA_CHECK(cudaFree(Wf));
    CUDA_CHECK(cudaStreamDestroy(st));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_glvq_codec: %s\n", e.what());
    return 1;
  }
}
#else
#include <cstdio>
int main() {
  std::puts("bench_glvq_codec: built without CUDA");
  return 0;
}
#endif
