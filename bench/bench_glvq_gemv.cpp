// Fused GLVQ decode-GEMV (batch 1) and small-batch decode-GEMM against cuBLAS fp16
// (cublasGemmEx, fp32 accumulation) in the same run, on Llama-2-70B layer shapes.
// Times are medians of CUDA-event means over many calls, cycling through copies of the
// weights so that no call finds them in L2. "GB/s" is effective bandwidth: the bytes
// each kernel must read or write at least (weights or codes as stored, x, y, per-group
// parameters) over the time; "x fp16" is the speed-up over cuBLAS on the same shape.
// Each GLVQ row is the whole call: activation transform + GEMV (two launches).
//   bench_glvq_gemv [--quick | --profile]   (--profile: a few calls of one shape, for ncu)
#ifdef GLVQ_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>

#include "bench_util.h"
#include "glvq_gemv.cuh"
#include "glvq_mma_layout.h"
#include "quant/glvq_codec.h"

using namespace glvq;

#define CUBLAS_CHECK(call)                                                                  \
  do {                                                                                      \
    const cublasStatus_t s_ = (call);                                                       \
    if (s_ != CUBLAS_STATUS_SUCCESS) GLVQ_FAIL("cuBLAS call `{}` failed: status {}", #call, int(s_)); \
  } while (0)

namespace {

template <typename T>
T* upload(const std::vector<T>& h, std::vector<void*>& owned) {
  void* d = nullptr;
  CUDA_CHECK(cudaMalloc(&d, std::max<size_t>(1, h.size() * sizeof(T))));
  CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  owned.push_back(d);
  return static_cast<T*>(d);
}

std::vector<float> download_half(const __half* d, size_t n) {
  std::vector<__half> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = __half2float(h[i]);
  return f;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

struct Ctx {
  cudaStream_t st;
  cublasHandle_t h;
  size_t l2;
  bool quick;
};

/// cuBLAS y[batch, out] = x[batch, in] W^T with W fp16 [out, in] row-major.
void cublas_gemv(Ctx& C, const __half* W, int64_t out, int64_t in, const __half* x, __half* y, int batch) {
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasGemmEx(C.h, CUBLAS_OP_T, CUBLAS_OP_N, int(out), batch, int(in), &one, W, CUDA_R_16F, int(in), x,
                            CUDA_R_16F, int(in), &zero, y, CUDA_R_16F, int(out), CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

/// A random mu = 0 layer of uniform bit width in both layouts, on the device.
struct BenchLayer {
  GlvqLayout L;
  std::vector<void*> owned;
  GlvqDeviceParams p, p_mu;  // p_mu: the same layer with mu = 255 (naive path only)
  uint8_t* codes = nullptr;  // checkpoint layout
  size_t codes_bytes = 0;
  GlvqMmaPlan plan;
  std::vector<uint8_t> packed;
  const int64_t* coff = nullptr;
  const uint8_t* cbits = nullptr;
  BenchLayer(int64_t out, int64_t in, int d, int b, uint64_t seed) : L{out, in, d, 128} {
    bench::Rng rng(seed);
    const int64_t G = L.groups();
    std::vector<uint8_t> bits(G, uint8_t(b));
    std::vector<float> scale(G), mu0(G, 0.0f), mu1(G, 255.0f), Gm(G * d * d);
    const float step = 2.0f / float(1 << b);
    for (int64_t g = 0; g < G; ++g) {
      scale[g] = 0.02f + 0.02f * rng.uniform();
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j) Gm[(g * d + i) * d + j] = step * ((i == j ? 1.0f : 0.0f) + 0.1f * rng.normal());
    }
    const std::vector<int64_t> off = glvq_group_offsets(L, bits.data());
    std::vector<uint8_t> c(off.back());
    rng.fill_bytes(c);  // every bit pattern is a valid code vector when d*b % 8 == 0
    codes_bytes = c.size();
    p.bits = upload(bits, owned);
    p.scale = upload(scale, owned);
    p.mu = upload(mu0, owned);
    p.G = upload(Gm, owned);
    p.Ginv = p.G;  // not read by the GEMV
    p.group_offsets = upload(off, owned);
    p_mu = p;
    p_mu.mu = upload(mu1, owned);
    codes = upload(c, owned);
    plan = glvq_mma_plan(out, in, d, 128, bits.data());
    packed.resize(plan.bytes());
    glvq_mma_repack(plan, bits.data(), c.data(), packed.data());
    coff = upload(plan.chunk_offsets, owned);
    cbits = upload(plan.chunk_bits, owned);
  }
  ~BenchLayer() {
    for (void* q : owned) cudaFree(q);
  }
  double param_bytes() const { return double(L.groups()) * (double(L.dim) * L.dim * 4 + 4 + 1); }
};

/// Graph timing, or -1 when capture fails (the message is printed).
template <typename F>
double graph_us(Ctx& C, F&& f, int iters) {
  try {
    return bench::time_graph_us(f, C.st, iters);
  } catch (const std::exception& e) {
    std::printf("  (graph timing failed: %s)\n", e.what());
    cudaGetLastError();
    return -1;
  }
}

/// Times f(i) both ways: plain stream launches and replays of a captured graph.
template <typename F>
std::pair<double, double> time_both(Ctx& C, F&& f, int iters) {
  const double s = bench::time_us(f, C.st, iters);
  return {s, graph_us(C, f, iters)};
}

void print_row(const char* shape, int b, int d, const std::string& path, int batch, double us, double bytes,
               double fp16_us) {
  if (us <= 0) return;
  std::printf("%-12s %2d %3d %-30s %3d %9.1f %8.0f %7.2fx\n", shape, b, d, path.c_str(), batch, us, bytes / us / 1e3,
              fp16_us / us);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Ctx C;
    C.quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const bool profile = argc > 1 && std::strcmp(argv[1], "--profile") == 0;
    CUDA_CHECK(cudaStreamCreate(&C.st));
    CUBLAS_CHECK(cublasCreate(&C.h));
    CUBLAS_CHECK(cublasSetStream(C.h, C.st));
    C.l2 = bench::l2_bytes();
    bench::print_device();
    if (!profile)
      std::printf("device-to-device copy (cudaMemcpyAsync, 1 GiB): %.0f GB/s (read + write)\n",
                  bench::copy_gbps(size_t(1) << 30, C.st));
    std::printf("%-12s %2s %3s %-30s %3s %9s %8s %8s\n", "out x in", "b", "d", "path [timing]", "B", "us", "GB/s",
                "x fp16");
    const int64_t shapes[4][2] = {{8192, 8192}, {28672, 8192}, {8192, 28672}, {1024, 8192}};
    const size_t rot_min = 3 * C.l2;
    const int iters = C.quick ? 20 : 100;
    for (const auto& sh : shapes) {
      const int64_t out = sh[0], in = sh[1];
      if (profile && !(out == 8192 && in == 28672)) continue;
      char shape[32];
      std::snprintf(shape, sizeof shape, "%lldx%lld", (long long)out, (long long)in);
      bench::Rng rng(out * 31 + in);
      void* w0 = bench::random_fp16_device(out, in, rng);  // cuBLAS's weights
      const bench::Rotation Wr(w0, size_t(out) * in * 2, rot_min);
      CUDA_CHECK(cudaFree(w0));
      std::vector<__half> xh(size_t(16) * in);
      for (auto& v : xh) v = __float2half_rn(rng.normal());
      __half *x = nullptr, *y = nullptr, *y2 = nullptr;
      CUDA_CHECK(cudaMalloc(&x, xh.size() * 2));
      CUDA_CHECK(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMalloc(&y, size_t(16) * out * 2));
      CUDA_CHECK(cudaMalloc(&y2, size_t(16) * out * 2));
      const double io1 = double(in) * 2 + double(out) * 2;
      const double w16 = double(out) * in * 2;
      if (profile) {
        for (int i = 0; i < 3; ++i) cublas_gemv(C, Wr.at<__half>(i), out, in, x, y, 1);
      }
      const auto t16 = profile ? std::pair<double, double>{1, 1}
                               : time_both(C, [&](int i) { cublas_gemv(C, Wr.at<__half>(i), out, in, x, y, 1); }, iters);
      print_row(shape, 16, 0, "cuBLAS fp16 GemmEx [stream]", 1, profile ? 0 : t16.first, w16 + io1, t16.first);
      print_row(shape, 16, 0, "cuBLAS fp16 GemmEx [graph]", 1, profile ? 0 : t16.second, w16 + io1, t16.second);
      for (int b : {2, 3}) {
        for (int d : {8, 32}) {
          if (profile && !(b == 2 && d == 8)) continue;
          BenchLayer B(out, in, d, b, uint64_t(out) * 7 + in * 3 + b * 11 + d);
          uint8_t* pk0 = nullptr;
          CUDA_CHECK(cudaMalloc(&pk0, B.packed.size()));
          CUDA_CHECK(cudaMemcpy(pk0, B.packed.data(), B.packed.size(), cudaMemcpyHostToDevice));
          const bench::Rotation Pk(pk0, B.packed.size(), rot_min);
          const bench::Rotation Ck(B.codes, B.codes_bytes, rot_min);
          CUDA_CHECK(cudaFree(pk0));
          void* wsb = nullptr;
          CUDA_CHECK(cudaMalloc(&wsb, glvq_gemv_workspace_bytes(B.L, 16)));
          GlvqGemvWorkspace ws;
          CUDA_CHECK(glvq_gemv_workspace_init(B.L, 16, wsb, &ws, C.st));
          GlvqMmaDevice M = glvq_mma_device(B.plan, Pk.at<uint8_t>(0), B.coff, B.cbits);
          auto mma_call = [&](const GlvqGemvTuning& tune, int batch) {
            return [&, tune, batch](int i) {
              GlvqMmaDevice Mi = M;
              Mi.packed = Pk.at<uint8_t>(i);
              CUDA_CHECK(glvq_gemv_mma_launch(Mi, B.p, x, in, y, out, batch, ws, C.st, tune));
            };
          };
          if (profile) {
            for (int i = 0; i < 3; ++i) mma_call(GlvqGemvTuning{}, 1)(i);
            // offset codes, for ncu side by side
            for (int i = 0; i < 3; ++i) mma_call(GlvqGemvTuning{0, 64, 2, true, false}, 1)(i);
            CUDA_CHECK(cudaStreamSynchronize(C.st));
            CUDA_CHECK(cudaFree(wsb));
            continue;
          }
          const double mma_bytes = double(B.packed.size()) + io1 + B.param_bytes();
          const auto t_def = time_both(C, mma_call(GlvqGemvTuning{}, 1), iters);
          print_row(shape, b, d, "mma default [stream]", 1, t_def.first, mma_bytes, t16.first);
          print_row(shape, b, d, "mma default [graph]", 1, t_def.second, mma_bytes, t16.second);
          if (!C.quick) {
            // the variants side by side (same run, graph timing): codes as subnormals or
            // with the 1024 offset (as v3 had them), loads of one or two chunks, PDL
            struct Variant {
              const char* name;
              GlvqGemvTuning t;
            };
            const Variant vs[] = {{"u2 offset", {0, 64, 2, true, false}},
                                  {"u2 subnormal", {0, 64, 2, true, true}},
                                  {"u1 subnormal", {0, 64, 1, true, true}},
                                  {"u2 subnormal nopdl", {0, 64, 2, false, true}}};
            for (const Variant& v : vs)
              print_row(shape, b, d, std::string(v.name) + " [graph]", 1, graph_us(C, mma_call(v.t, 1), iters),
                        mma_bytes, t16.second);
          }
          // straightforward kernel, checkpoint layout, mu = 0 and mu = 255
          const int nit = C.quick ? 3 : 10;
          const double tn0 = bench::time_us(
              [&](int i) {
                CUDA_CHECK(glvq_gemv_naive_launch(B.L, B.p, Ck.at<uint8_t>(i), x, in, y2, out, 1, ws, C.st));
              },
              C.st, nit, 3, 1);
          const double naive_bytes = double(B.codes_bytes) + io1 + B.param_bytes();
          print_row(shape, b, d, "naive mu=0 [stream]", 1, tn0, naive_bytes, t16.first);
          // agreement of the two paths (same codes, mu = 0)
          CUDA_CHECK(glvq_gemv_mma_launch(M, B.p, x, in, y, out, 1, ws, C.st));
          CUDA_CHECK(glvq_gemv_naive_launch(B.L, B.p, Ck.at<uint8_t>(0), x, in, y2, out, 1, ws, C.st));
          CUDA_CHECK(cudaStreamSynchronize(C.st));
          const double err = rel_l2(download_half(y, out), download_half(y2, out));
          const double tn1 = bench::time_us(
              [&](int i) {
                CUDA_CHECK(glvq_gemv_naive_launch(B.L, B.p_mu, Ck.at<uint8_t>(i), x, in, y2, out, 1, ws, C.st));
              },
              C.st, nit, 3, 1);
          print_row(shape, b, d, "naive mu=255 [stream]", 1, tn1, naive_bytes, t16.first);
          std::printf("%-12s %2d %3d   check: |y_mma - y_naive| / |y_naive| = %.2e\n", shape, b, d, err);
          // small batches on the 2-bit, d = 8 layer (graph timing)
          if (b == 2 && d == 8 && !C.quick && out >= 8192) {
            for (int batch : {4, 8, 16}) {
              const double tb16 =
                  graph_us(C, [&](int i) { cublas_gemv(C, Wr.at<__half>(i), out, in, x, y2, batch); }, iters);
              const double iob = batch * io1;
              print_row(shape, 16, 0, "cuBLAS fp16 GemmEx [graph]", batch, tb16, w16 + iob, tb16);
              const double tb = graph_us(C, mma_call(GlvqGemvTuning{}, batch), iters);
              print_row(shape, b, d, "mma default [graph]", batch, tb, double(B.packed.size()) + iob + B.param_bytes(),
                        tb16);
              const double t3 = graph_us(C, mma_call(GlvqGemvTuning{0, 64, 2, true, false}, batch), iters);
              print_row(shape, b, d, "u2 offset [graph]", batch, t3,
                        double(B.packed.size()) + iob + B.param_bytes(), tb16);
            }
          }
          CUDA_CHECK(cudaFree(wsb));
        }
      }
      CUDA_CHECK(cudaFree(x));
      CUDA_CHECK(cudaFree(y));
      CUDA_CHECK(cudaFree(y2));
    }
    CUBLAS_CHECK(cublasDestroy(C.h));
    CUDA_CHECK(cudaStreamDestroy(C.st));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_glvq_gemv: %s\n", e.what());
    return 1;
  }
}
#else
#include <cstdio>
int main() {
  std::puts("bench_glvq_gemv: built without CUDA");
  return 0;
}
#endif
