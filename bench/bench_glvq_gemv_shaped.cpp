// The shaped code's fused decode-GEMV (kernels/glvq_gemv_shaped.cuh: the default code's
// path in glvq-generate) against cuBLAS fp16 and the box code's tensor-core path, same
// run, Llama-2-70B layer shapes, graph timing (as a decode step replays it), weights
// cycled so that no call finds them in L2. Widths: uniform 2 bits, and a bit-allocation
// mix of 1/2/3-bit groups averaging 2 (what a 2-bit GLVQ checkpoint holds). Rows come per
// path, each at batch 1, 4, 16 (--quick: batch 1, d = 8 only).
//   bench_glvq_gemv_shaped [--quick]
#ifdef GLVQ_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstring>
#include <string>

#include "bench_util.h"
#include "glvq_gemv.cuh"
#include "glvq_gemv_shaped.cuh"
#include "glvq_mma_layout.h"
#include "quant/glvq_codec.h"

using namespace glvq;

namespace {

template <typename T>
T* upload(const std::vector<T>& h, std::vector<void*>& owned) {
  void* d = nullptr;
  CUDA_CHECK(cudaMalloc(&d, std::max<size_t>(1, h.size() * sizeof(T))));
  CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  owned.push_back(d);
  return static_cast<T*>(d);
}

/// A random layer: codes (any bytes are valid for both codes), G near the identity.
struct Layer {
  GlvqLayout L;
  std::vector<void*> owned;
  GlvqDeviceParams p;
  std::vector<uint8_t> bits, codes;
  std::vector<int64_t> off;
  Layer(int64_t out, int64_t in, int d, const std::vector<uint8_t>& widths, GlvqCode code, uint64_t seed)
      : L{out, in, d, 128, code} {
    bench::Rng rng(seed);
    const int64_t G = L.groups();
    std::vector<float> scale(G), mu(G, 0.0f), Gm(G * d * d);
    for (int64_t g = 0; g < G; ++g) {
      bits.push_back(widths[g % widths.size()]);
      scale[g] = 0.01f + 0.01f * rng.uniform();
      for (int i = 0; i < d; ++i)
        for (int j = 0; j < d; ++j) Gm[(g * d + i) * d + j] = (i == j ? 1.0f : 0.0f) + 0.1f * rng.normal();
    }
    off = glvq_group_offsets(L, bits.data());
    codes.resize(off.back());
    rng.fill_bytes(codes);
    p.bits = upload(bits, owned);
    p.scale = upload(scale, owned);
    p.mu = upload(mu, owned);
    p.G = upload(Gm, owned);
    p.Ginv = p.G;
    p.group_offsets = upload(off, owned);
  }
  ~Layer() {
    for (void* q : owned) cudaFree(q);
  }
};

void cublas_gemv(cublasHandle_t h, const __half* W, int64_t out, int64_t in, const __half* x, __half* y, int batch) {
  const float one = 1.0f, zero = 0.0f;
  if (cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(out), batch, int(in), &one, W, CUDA_R_16F, int(in), x, CUDA_R_16F,
                   int(in), &zero, y, CUDA_R_16F, int(out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) !=
      CUBLAS_STATUS_SUCCESS)
    GLVQ_FAIL("cublasGemmEx failed");
}

void row(const char* shape, const std::string& what, int batch, double us, double bytes, double fp16_us) {
  std::printf("%-12s %-34s %3d %9.1f %8.0f %7.2fx\n", shape, what.c_str(), batch, us, bytes / us / 1e3, fp16_us / us);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    cudaStream_t st;
    cublasHandle_t h;
    CUDA_CHECK(cudaStreamCreate(&st));
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS || cublasSetStream(h, st) != CUBLAS_STATUS_SUCCESS)
      GLVQ_FAIL("cuBLAS init failed");
    bench::print_device();
    CUDA_CHECK(glvq_gemv_shaped_prepare());  // the books, before any graph capture
    const double copy = bench::copy_gbps(size_t(1) << 30, st);
    std::printf("device-to-device copy (1 GiB): %.0f GB/s (read + write)\n", copy);
    std::printf("%-12s %-34s %3s %9s %8s %8s\n", "out x in", "path [graph timing]", "B", "us", "GB/s", "x fp16");
    const size_t rot_min = 3 * bench::l2_bytes();
    const int iters = quick ? 20 : 100;
    const int64_t shapes[4][2] = {{8192, 8192}, {28672, 8192}, {8192, 28672}, {1024, 8192}};
    for (const auto& sh : shapes) {
      const int64_t out = sh[0], in = sh[1];
      char shape[32];
      std::snprintf(shape, sizeof shape, "%lldx%lld", (long long)out, (long long)in);
      bench::Rng rng(out * 31 + in);
      void* w0 = bench::random_fp16_device(out, in, rng);  // cuBLAS's weights
      const bench::Rotation Wr(w0, size_t(out) * in * 2, rot_min);
      CUDA_CHECK(cudaFree(w0));
      std::vector<__half> xh(size_t(16) * in);
      for (auto& v : xh) v = __float2half_rn(rng.normal());
      __half *x = nullptr, *y = nullptr;
      CUDA_CHECK(cudaMalloc(&x, xh.size() * 2));
      CUDA_CHECK(cudaMemcpy(x, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMalloc(&y, size_t(16) * out * 2));
      const double w16 = double(out) * in * 2;
      // Each layer is built once per shape and timed at every batch (building a 70B-shaped
      // layer and its copies costs seconds of host time).
      std::vector<int> batches = {1, 4, 16};
      if (quick) batches = {1};
      auto io = [&](int batch) { return batch * (double(in) + double(out)) * 2; };
      std::vector<double> t16;
      for (int batch : batches) {
        t16.push_back(
            bench::time_graph_us([&](int i) { cublas_gemv(h, Wr.at<__half>(i), out, in, x, y, batch); }, st, iters));
        row(shape, "cuBLAS fp16 GemmEx", batch, t16.back(), w16 + io(batch), t16.back());
      }
      {  // box code, tensor-core path (the synthetic checkpoints' code)
        Layer B(out, in, 8, {2}, GlvqCode::box, 11);
        const GlvqMmaPlan P = glvq_mma_plan(out, in, 8, 128, B.bits.data());
        std::vector<uint8_t> packed(P.bytes());
        glvq_mma_repack(P, B.bits.data(), B.codes.data(), packed.data());
        std::vector<void*> own;
        const uint8_t* pk = upload(packed, own);
        const bench::Rotation Pk(pk, packed.size(), rot_min);
        const int64_t* co = upload(P.chunk_offsets, own);
        const uint8_t* cb = upload(P.chunk_bits, own);
        void* wsb = nullptr;
        CUDA_CHECK(cudaMalloc(&wsb, glvq_gemv_workspace_bytes(B.L, 16)));
        GlvqGemvWorkspace ws;
        CUDA_CHECK(glvq_gemv_workspace_init(B.L, 16, wsb, &ws, st));
        const GlvqMmaDevice M0 = glvq_mma_device(P, pk, co, cb);
        for (size_t k = 0; k < batches.size(); ++k) {
          const int batch = batches[k];
          const double t = bench::time_graph_us(
              [&](int i) {
                GlvqMmaDevice M = M0;
                M.packed = Pk.at<uint8_t>(i);
                CUDA_CHECK(glvq_gemv_mma_launch(M, B.p, x, in, y, out, batch, ws, st));
              },
              st, iters);
          row(shape, "box d=8 2 bits (mma)", batch, t, double(packed.size()) + io(batch), t16[k]);
        }
        CUDA_CHECK(cudaFree(wsb));
        for (void* q : own) cudaFree(q);
      }
      struct Variant {
        const char* name;
        int d;
        std::vector<uint8_t> widths;
      };
      const Variant vs[] = {{"shaped d=8 2 bits", 8, {2}},
                            {"shaped d=8 1/2/3 bits (mean 2)", 8, {2, 1, 2, 3}},
                            {"shaped d=32 2 bits", 32, {2}},
                            {"shaped d=8 3 bits", 8, {3}},
                            {"shaped d=8 4 bits", 8, {4}}};
      for (const Variant& v : vs) {
        if (quick && v.d != 8) continue;
        Layer S(out, in, v.d, v.widths, GlvqCode::shaped, 13);
        std::vector<void*> own;
        const uint8_t* c0 = upload(S.codes, own);
        const bench::Rotation Cr(c0, S.codes.size(), rot_min);
        const std::vector<int32_t> ch = glvq_shaped_gemv_chunks(S.L, S.bits.data(), S.off.data());
        GlvqShapedDevice M0;
        M0.L = S.L;
        M0.chunks = upload(ch, own);
        M0.nchunks = int64_t(ch.size() / 4);
        M0.work = upload(glvq_shaped_gemv_work(S.L, S.bits.data(), S.off.data()), own);
        M0.max_bits = glvq_shaped_max_bits(S.L, S.bits.data());
        void* wsb = nullptr;
        CUDA_CHECK(cudaMalloc(&wsb, glvq_gemv_workspace_bytes(S.L, 16)));
        GlvqGemvWorkspace ws;
        CUDA_CHECK(glvq_gemv_workspace_init(S.L, 16, wsb, &ws, st));
        for (size_t k = 0; k < batches.size(); ++k) {
          const int batch = batches[k];
          auto call = [&](const GlvqShapedTuning& tune) {
            return [&, tune](int i) {
              GlvqShapedDevice M = M0;
              M.codes = Cr.at<uint8_t>(i);
              CUDA_CHECK(glvq_gemv_shaped_launch(M, S.p, x, in, y, out, batch, ws, st, tune));
            };
          };
          const double bytes = double(S.codes.size()) + io(batch) + double(S.L.groups()) * (v.d * v.d * 4 + 4 + 1);
          row(shape, v.name, batch, bench::time_graph_us(call(GlvqShapedTuning{}), st, iters), bytes, t16[k]);
          GlvqShapedTuning v2;
          v2.version = 2;
          row(shape, "  version 2 (next chunk's codes loaded ahead)", batch, bench::time_graph_us(call(v2), st, iters),
              bytes, t16[k]);
          if (!quick && batch == 1 && v.d == 8 && v.widths.size() == 1 && v.widths[0] == 2) {
            for (int w : {16, 32, 64}) {
              GlvqShapedTuning t;
              t.warps_per_sm = w;
              row(shape, std::string("  warps/sm ") + std::to_string(w), batch,
                  bench::time_graph_us(call(t), st, iters), bytes, t16[k]);
            }
            GlvqShapedTuning np;
            np.pdl = false;
            row(shape, "  no PDL", batch, bench::time_graph_us(call(np), st, iters), bytes, t16[k]);
            for (int w : {16, 32}) {
              GlvqShapedTuning t = v2;
              t.warps_per_sm = w;
              row(shape, std::string("  version 2, warps/sm ") + std::to_string(w), batch,
                  bench::time_graph_us(call(t), st, iters), bytes, t16[k]);
            }
          }
        }
        CUDA_CHECK(cudaFree(wsb));
        for (void* q : own) cudaFree(q);
      }
      CUDA_CHECK(cudaFree(x));
      CUDA_CHECK(cudaFree(y));
    }
    cublasDestroy(h);
    CUDA_CHECK(cudaStreamDestroy(st));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_glvq_gemv_shaped: %s\n", e.what());
    return 1;
  }
}
#else
#include <cstdio>
int main() {
  std::puts("bench_glvq_gemv_shaped: built without CUDA");
  return 0;
}
#endif
