// The CUDA decoder: weights on the GPU, one stream, the decode step captured once.
#include "common/error.h"
#include "gen/cuda/cuda_state.h"
#include "gen/cuda/cuda_step.h"

#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <string>

namespace glvq {

std::unique_ptr<Decoder::CudaState> cuda_state_new(bool graph) {
  int n = 0;
  GLVQ_CHECK(cudaGetDeviceCount(&n) == cudaSuccess && n > 0, "--device cuda: no CUDA device is visible");
  return std::make_unique<Decoder::CudaState>(graph);
}

void cuda_on_stream(Decoder::CudaState& st, const std::function<void()>& f) {
  c10::cuda::CUDAStreamGuard guard(st.stream);
  f();
}

void cuda_build_weights(const GenModel& m, bool dense, GenWeights& w, Decoder::CudaState& st) {
  cuda_on_stream(st, [&]() {
    const LlamaConfig& c = m.config();
    const at::Device dev = st.device();
    const std::vector<int64_t> hid = {c.hidden}, emb = {c.vocab, c.hidden};
    w.embed = m.tensor("model.embed_tokens.weight", emb).to(dev, at::kHalf);
    w.norm = m.tensor("model.norm.weight", hid).to(dev);
    w.lm_head = m.lm_head().to(dev, at::kHalf);
    for (int b = 0; b < c.n_layers; ++b) {
      GenBlock blk;
      blk.input_norm = m.tensor(fmt::format("model.layers.{}.input_layernorm.weight", b), hid).to(dev);
      blk.post_norm = m.tensor(fmt::format("model.layers.{}.post_attention_layernorm.weight", b), hid).to(dev);
      for (int l = 0; l < kNumLinears; ++l) blk.lin[l] = cuda_make_linear(m.layer(b, static_cast<Linear>(l)), dense, st);
      w.blocks.push_back(std::move(blk));
    }
    st.stream.synchronize();
  });
}

void cuda_state_reset(Decoder::CudaState& st) {
  // The output lives in the graph's private pool: free it before the pool goes.
  st.logits = at::Tensor();
  st.graph.reset();
  st.tok = at::Tensor();
  st.qpos = at::Tensor();
}

namespace {

at::Tensor forward_on_stream(Decoder::CudaState& st, const GenWeights& w, KvCache& cache, const at::Tensor& tokens,
                             int64_t pos, bool all_logits) {
  c10::cuda::CUDAStreamGuard guard(st.stream);
  const at::Device dev = st.device();
  const int64_t B = tokens.size(0), n = tokens.size(1);
  if (n > 1 || all_logits || !st.graph_enabled) {
    const at::Tensor qpos = at::arange(pos, pos + n, at::TensorOptions().dtype(at::kLong).device(dev));
    return gen_forward(w, cache, tokens.to(dev), qpos, pos + n, all_logits);
  }
  // A decode step with static shapes: attention reads the whole cache, masked past qpos.
  if (!st.tok.defined()) {
    st.tok = at::empty({B, 1}, at::TensorOptions().dtype(at::kLong).device(dev));
    st.qpos = at::empty({1}, at::TensorOptions().dtype(at::kLong).device(dev));
  }
  st.tok.copy_(tokens);
  st.qpos.fill_(pos);
  if (st.graph) {
    st.graph->replay();
    return st.logits;
  }
  // The first step runs eagerly (it also warms up cuBLAS and the kernels' one-time
  // set-up), then the same step is captured for the next ones. GLVQ_DECODE_STEP=fused runs
  // the fused non-linear ops (gen_forward with n = 1 is their reference, in
  // tests/gpu/test_gen_step_ops.cpp), which have not run on a GPU yet (docs/BENCH.md).
  const char* mode = std::getenv("GLVQ_DECODE_STEP");
  const bool fused = mode && std::string(mode) == "fused";
  auto step = [&]() {
    return fused ? cuda_decode_step(w, cache, st.tok, st.qpos)
                 : gen_forward(w, cache, st.tok, st.qpos, cache.max_len, false);
  };
  at::Tensor first = step();
  st.stream.synchronize();
  st.graph = std::make_unique<at::cuda::CUDAGraph>();
  st.graph->capture_begin();
  st.logits = step();
  st.graph->capture_end();
  return first;
}

}  // namespace

at::Tensor cuda_forward(Decoder::CudaState& st, const GenWeights& w, KvCache& cache, const at::Tensor& tokens,
                        int64_t pos, bool all_logits) {
  const c10::cuda::CUDAStream caller = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = forward_on_stream(st, w, cache, tokens, pos, all_logits);
  {
    // The graph's output buffer is overwritten by the next replay: the caller gets its own copy.
    c10::cuda::CUDAStreamGuard guard(st.stream);
    if (st.graph && out.data_ptr() == st.logits.data_ptr()) out = out.clone();
  }
  // The logits were made on the decoder's non-blocking stream: the caller's stream (on which
  // .cpu(), .item() and the sampler run) must wait for them, and the allocator must not hand
  // their memory back to the decoder's stream while the caller still reads it.
  at::cuda::CUDAEvent done;
  done.record(st.stream);
  done.block(caller);
  c10::cuda::CUDACachingAllocator::recordStream(out.storage().data_ptr(), caller);
  return out;
}

void cuda_synchronize(Decoder::CudaState& st) { st.stream.synchronize(); }

int64_t cuda_free_bytes() {
  c10::cuda::CUDACachingAllocator::emptyCache();
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return -1;
  return int64_t(free);
}

std::string cuda_device_name() {
  cudaDeviceProp p{};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return "cuda";
  return p.name;
}

}  // namespace glvq
