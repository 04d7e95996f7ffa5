// glvq-generate's CUDA path against its CPU path (fp32, itself tested against the LibTorch
// forward in tests/test_gen_forward.cpp) on tiny-llama quantized with GLVQ in the test:
// logits at every prompt position and for 64 graph-replayed decode steps within fp16
// tolerance; the incoherence kernel against glvq_orth_apply; shaped-code layers run
// their own fused GEMV and still agree. Run by the lead on the GPU machine:
//   build/glvq_gpu_tests --gtest_filter='GenCuda*'
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include "ckpt/checkpoint.h"
#include "common/fs_util.h"
#include "gen/decoder.h"
#include "gen/gen_model.h"
#include "glvq_test_util.h"
#include "model/model_files.h"
#include "nn/llama.h"
#include "quant/glvq.h"
#include "quant/glvq_hadamard.h"

#ifdef GLVQ_WITH_TORCH_CUDA
#include "glvq_orth.cuh"
#endif

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <execinfo.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

namespace glvq {
namespace {

// A crash on the GPU machine leaves no core to read: print which thread faulted, at which
// address, the mapping (library and offset, for addr2line) of its program counter, and the
// frames, before dying. Not async-signal-safe in the strict sense; it only has to work once.
const auto kStart = std::chrono::steady_clock::now();
double since_start() { return std::chrono::duration<double>(std::chrono::steady_clock::now() - kStart).count(); }
const pid_t kMainTid = static_cast<pid_t>(::syscall(SYS_gettid));

void print_mapping(uintptr_t pc) {
  std::FILE* f = std::fopen("/proc/self/maps", "r");
  if (!f) return;
  char line[512];
  while (std::fgets(line, sizeof line, f)) {
    uintptr_t lo = 0, hi = 0, off = 0;
    if (std::sscanf(line, "%lx-%lx %*s %lx", &lo, &hi, &off) == 3 && pc >= lo && pc < hi) {
      std::fprintf(stderr, "[gen-test] pc %#lx is at offset %#lx of: %s", pc, pc - lo + off, line);
      std::fclose(f);
      return;
    }
  }
  std::fprintf(stderr, "[gen-test] pc %#lx is in no mapping\n", pc);
  std::fclose(f);
}

void print_crash(int sig, siginfo_t* info, [[maybe_unused]] void* uc) {
  const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  std::fprintf(stderr, "[gen-test] signal %d at %.2fs, thread %d (%s), fault address %p\n", sig, since_start(), tid,
               tid == kMainTid ? "the main thread" : "not the main thread", info->si_addr);
#if defined(__x86_64__)
  const auto& regs = static_cast<ucontext_t*>(uc)->uc_mcontext.gregs;
  uintptr_t pc = static_cast<uintptr_t>(regs[REG_RIP]);
  if (pc == 0) {  // a call through a null pointer: the caller's return address is on top of the stack
    std::fprintf(stderr, "[gen-test] pc 0 (a call through a null pointer); its caller:\n");
    pc = *reinterpret_cast<const uintptr_t*>(regs[REG_RSP]);
  }
  print_mapping(pc);
#endif
  void* f[64];
  const int n = ::backtrace(f, 64);
  ::backtrace_symbols_fd(f, n, 2);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
bool install_crash_printer() {
  struct sigaction sa {};
  sa.sa_sigaction = print_crash;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  // Marks whether a crash comes after main returned (static destruction) or before.
  std::atexit([] { std::fprintf(stderr, "[gen-test] exit handlers run at %.2fs\n", since_start()); });
  return true;
}
const bool kCrashPrinter = install_crash_printer();
void mark(const char* what) { std::fprintf(stderr, "[gen-test] %s at %.1fs\n", what, since_start()); }

#ifdef GLVQ_WITH_TORCH_CUDA
const char* kModel = GLVQ_SOURCE_DIR "/models/tiny-llama";

/// tiny-llama quantized with GLVQ (2 bits, d = 8, incoherence, 10 steps) on the GPU;
/// SHAPED_LAYER (a tensor name, may be empty) with the shaped code.
std::string write_glvq_tiny(const std::string& dir, const std::string& shaped_layer) {
  c10::NoGradGuard ng;
  ModelFiles files(kModel);
  const LlamaConfig cfg = load_llama_config(kModel);
  const std::string path = dir + "/model.glvq.h5";
  CheckpointWriter w(path);
  at::manual_seed(7);
  for (int b = 0; b < cfg.n_layers; ++b) {
    const BlockWeights bw = load_block(files, cfg, b, at::Device(at::kCUDA, 0));
    for (int l = 0; l < kNumLinears; ++l) {
      const std::string name = linear_tensor_name(b, static_cast<Linear>(l));
      const at::Tensor X = at::randn({1024, bw.w[l].size(1)}, bw.w[l].options());
      GlvqOptions o;
      o.cfg.code = "box";  // the fused path's code; the shaped one is the config default
      o.cfg.iters = 10;
      o.bits = 2.0;
      if (name == shaped_layer) {
        o.cfg.code = "shaped";
        o.cfg.lloyd_iters = 1;  // its search runs on the CPU: one round is enough for a decode check
      }
      w.add_layer(name, glvq_quantize_layer(bw.w[l], X.t().matmul(X) / 1024, name, o));
    }
  }
  for (const std::string& n : unquantized_tensor_names(cfg, files)) w.add_tensor(files.get(n));
  CheckpointInfo info;
  info.model_config = cfg.raw.dump(2);
  info.config = nlohmann::json{{"model", {{"path", kModel}}}}.dump();
  info.method = "glvq";
  w.finish(info);
  return path;
}

struct TmpDir {
  std::string path;
  TmpDir() {
    char t[] = "/tmp/glvq-gen-gpu-XXXXXX";
    path = ::mkdtemp(t);
  }
  // Not std::filesystem::remove_all: with pip LibTorch it crashed here (fs_util.h says why).
  ~TmpDir() {
    if (!remove_tree(path)) std::fprintf(stderr, "[gen-test] could not remove %s\n", path.c_str());
    mark("temporary directory removed");
  }
};

double max_rel(const at::Tensor& got, const at::Tensor& ref) {
  return (got.cpu() - ref.cpu()).abs().max().item<double>() / std::max(1.0, ref.abs().max().item<double>());
}

/// Prompt logits and 64 decode steps of DEC against CPU, both fed the CPU's greedy tokens.
void compare_with_cpu(Decoder& gpu, Decoder& cpu, double tol, const std::string& what) {
  std::vector<int64_t> prompt = {1};
  for (int i = 0; i < 40; ++i) prompt.push_back(100 + 37 * i % 3000);
  const at::Tensor p = at::tensor(prompt, at::TensorOptions().dtype(at::kLong)).unsqueeze(0);
  gpu.reset(1, 41 + 64);
  cpu.reset(1, 41 + 64);
  const at::Tensor rg = gpu.forward(p, true), rc = cpu.forward(p, true);
  EXPECT_LE(max_rel(rg, rc), tol) << what << ": prompt logits";
  at::Tensor last_c = rc[0][-1];
  int agree = 0, decisive = 0;
  for (int step = 0; step < 64; ++step) {
    const int64_t next = last_c.argmax().item<int64_t>();
    const at::Tensor t = at::full({1, 1}, next, at::TensorOptions().dtype(at::kLong));
    const at::Tensor lg = gpu.forward(t)[0].cpu();  // copied before the next replay overwrites it
    last_c = cpu.forward(t)[0];
    EXPECT_LE(max_rel(lg, last_c), tol) << what << ": decode step " << step;
    const auto top2 = last_c.topk(2);
    const double margin = (std::get<0>(top2)[0] - std::get<0>(top2)[1]).item<double>();
    if (margin > 4 * tol * std::max(1.0, last_c.abs().max().item<double>())) {
      ++decisive;
      agree += lg.argmax().item<int64_t>() == last_c.argmax().item<int64_t>();
    }
  }
  EXPECT_EQ(agree, decisive) << what << ": greedy choices with a clear margin must agree";
  mark((what + " compared").c_str());
}
#endif

TEST(GenCuda, IncoherenceKernelMatchesReference) {
#ifndef GLVQ_WITH_TORCH_CUDA
  GTEST_SKIP() << "built without the CUDA decoder";
#else
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const at::Device gpu(at::kCUDA, 0);
  // m = 3, 3, 1, 43, 7; 6 and 50 (m = 3, 25) take the scalar path (n % 4 != 0)
  for (int64_t n : {96, 384, 1024, 11008, 28672, 6, 50}) {
    for (bool transpose : {false, true}) {
      at::manual_seed(n);
      const at::Tensor x = at::randn({5, n}).to(at::kHalf);
      const at::Tensor signs = glvq_random_signs(n, 11);
      const at::Tensor ref = transpose ? glvq_orth_apply_t(x.to(at::kDouble), signs.to(at::kDouble))
                                       : glvq_orth_apply(x.to(at::kDouble), signs.to(at::kDouble));
      int64_t p = 1;
      while (n % (2 * p) == 0) p *= 2;
      const int64_t m = n / p;
      // C as glvq_hadamard.cpp builds it: rows of the orthonormal DCT-II
      std::vector<float> c(size_t(m * m));
      for (int64_t k = 0; k < m; ++k)
        for (int64_t j = 0; j < m; ++j)
          c[k * m + j] = float(std::sqrt((k == 0 ? 1.0 : 2.0) / m) * std::cos(M_PI * (j + 0.5) * k / m));
      const at::Tensor C = at::from_blob(c.data(), {m * m}, at::kFloat).clone().to(gpu);
      const at::Tensor xd = x.to(gpu), sd = signs.to(gpu);
      at::Tensor y = at::empty_like(xd);
      ASSERT_EQ(glvq_orth_launch(reinterpret_cast<const __half*>(xd.data_ptr<at::Half>()), n,
                                 reinterpret_cast<__half*>(y.data_ptr<at::Half>()), n, 5, n, m, sd.data_ptr<float>(),
                                 m > 1 ? C.data_ptr<float>() : nullptr, transpose, nullptr),
                cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const double err = (y.cpu().to(at::kDouble) - ref).abs().max().item<double>();
      EXPECT_LE(err, 2e-3 * ref.abs().max().item<double>()) << "n " << n << " transpose " << transpose;
    }
  }
#endif
}

TEST(GenCuda, FusedDecoderMatchesCpuPath) {
#ifndef GLVQ_WITH_TORCH_CUDA
  GTEST_SKIP() << "built without the CUDA decoder";
#else
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  c10::NoGradGuard ng;
  TmpDir dir;
  mark("start");
  const std::string ck = write_glvq_tiny(dir.path, "");
  mark("quantized");
  GenModel m(ck);
  DecoderOptions co, go;
  go.device = "cuda";
  Decoder cpu(m, co), gpu(m, go);
  EXPECT_EQ(gpu.linear_kinds(), "42 glvq fused");
  mark("built");
  compare_with_cpu(gpu, cpu, 1e-2, "fused, graph");
  {
    // the fused non-linear ops of the captured step (read when the step is captured)
    ::setenv("GLVQ_DECODE_STEP", "fused", 1);
    Decoder fused_step(m, go);
    compare_with_cpu(fused_step, cpu, 1e-2, "fused, graph, fused step");
    ::unsetenv("GLVQ_DECODE_STEP");
  }
  DecoderOptions ng_opt = go;
  ng_opt.cuda_graph = false;
  Decoder eager(m, ng_opt);
  compare_with_cpu(eager, cpu, 1e-2, "fused, no graph");
  DecoderOptions dense = go;
  dense.dense = true;
  Decoder fp16(m, dense);
  EXPECT_EQ(fp16.linear_kinds(), "42 dense fp16");
  compare_with_cpu(fp16, cpu, 1e-2, "dense fp16");
  dense.cuda_graph = false;
  Decoder fp16_eager(m, dense);
  compare_with_cpu(fp16_eager, cpu, 1e-2, "dense fp16, no graph");
  // batch 4: each sequence as alone
  gpu.reset(4, 16);
  cpu.reset(1, 16);
  const at::Tensor toks = at::randint(0, 4096, {4, 8}, at::TensorOptions().dtype(at::kLong));
  const at::Tensor lg = gpu.forward(toks, true);
  for (int b = 0; b < 4; ++b) {
    cpu.reset(1, 16);
    EXPECT_LE(max_rel(lg[b], cpu.forward(toks.narrow(0, b, 1), true)[0]), 1e-2) << "sequence " << b;
  }
  mark("batch compared; tearing down");
#endif
}

TEST(GenCuda, ShapedLayersRunFused) {
#ifndef GLVQ_WITH_TORCH_CUDA
  GTEST_SKIP() << "built without the CUDA decoder";
#else
  if (!test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  c10::NoGradGuard ng;
  TmpDir dir;
  mark("start");
  const std::string ck = write_glvq_tiny(dir.path, "model.layers.2.mlp.up_proj.weight");
  mark("quantized");
  {
    GenModel m(ck);
    DecoderOptions co, go;
    go.device = "cuda";
    Decoder cpu(m, co);
    {
      Decoder gpu(m, go);
      EXPECT_EQ(gpu.linear_kinds(), "41 glvq fused, 1 glvq shaped fused");
      compare_with_cpu(gpu, cpu, 1e-2, "one shaped layer");
    }
    {
      // the shaped GEMV's version 2 (chosen when the layer is built) and the fused step
      ::setenv("GLVQ_SHAPED_GEMV", "2", 1);
      ::setenv("GLVQ_DECODE_STEP", "fused", 1);
      Decoder gpu(m, go);
      ::unsetenv("GLVQ_SHAPED_GEMV");
      compare_with_cpu(gpu, cpu, 1e-2, "one shaped layer, GEMV version 2, fused step");
      ::unsetenv("GLVQ_DECODE_STEP");
    }
    mark("gpu decoder destroyed");
  }
  mark("model and cpu decoder destroyed");
#endif
}

}  // namespace
}  // namespace glvq
