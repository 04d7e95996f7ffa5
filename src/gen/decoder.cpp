#include "gen/decoder.h"

#include "common/error.h"

#include <map>

#ifdef GLVQ_WITH_TORCH_CUDA
#include "gen/cuda/cuda_state.h"
#endif

namespace glvq {

#ifdef GLVQ_WITH_TORCH_CUDA
bool gen_cuda_built() { return true; }
#else
bool gen_cuda_built() { return false; }
struct Decoder::CudaState {};
#endif

int64_t gen_free_device_bytes(const std::string& device) {
#ifdef GLVQ_WITH_TORCH_CUDA
  if (device == "cuda") return cuda_free_bytes();
#endif
  return -1;
}

namespace {

void cpu_build_weights(const GenModel& m, GenWeights& w) {
  const LlamaConfig& c = m.config();
  const std::vector<int64_t> hid = {c.hidden}, emb = {c.vocab, c.hidden};
  w.embed = m.tensor("model.embed_tokens.weight", emb);
  w.norm = m.tensor("model.norm.weight", hid);
  w.lm_head = m.lm_head();
  for (int b = 0; b < c.n_layers; ++b) {
    GenBlock blk;
    blk.input_norm = m.tensor(fmt::format("model.layers.{}.input_layernorm.weight", b), hid);
    blk.post_norm = m.tensor(fmt::format("model.layers.{}.post_attention_layernorm.weight", b), hid);
    // The codec reference decodes once; every step then multiplies fp32 weights.
    for (int l = 0; l < kNumLinears; ++l)
      blk.lin[l] = std::make_unique<DenseLinear>(dequantize(m.layer(b, static_cast<Linear>(l))).contiguous());
    w.blocks.push_back(std::move(blk));
  }
}

}  // namespace

Decoder::Decoder(const GenModel& model, const DecoderOptions& opt) : opt_(opt) {
  w_.cfg = model.config();
  if (opt.device == "cpu") {
    GLVQ_CHECK(!opt.dense, "the fp16 baseline (dense) runs on --device cuda only");
    w_.device = at::kCPU;
    w_.act = at::kFloat;
    cpu_build_weights(model, w_);
  } else if (opt.device == "cuda") {
#ifdef GLVQ_WITH_TORCH_CUDA
    cuda_ = cuda_state_new(opt.cuda_graph);
    w_.device = at::Device(at::kCUDA, 0);
    w_.act = at::kHalf;
    cuda_build_weights(model, opt.dense, w_, *cuda_);
#else
    GLVQ_FAIL("this glvq was built without the CUDA path (it needs nvcc and a LibTorch with CUDA): use --device cpu");
#endif
  } else {
    GLVQ_FAIL("unknown device \"{}\": use cpu or cuda", opt.device);
  }
  w_.rope = make_rope(w_.cfg, w_.cfg.max_positions, w_.device);
}

Decoder::~Decoder() = default;

void Decoder::reset(int64_t batch, int64_t max_len) {
  GLVQ_CHECK(batch >= 1 && max_len >= 1, "batch {} and length {} must be positive", batch, max_len);
  GLVQ_CHECK(max_len <= w_.cfg.max_positions, "{} tokens do not fit the model's context of {} "
             "(max_position_embeddings)", max_len, w_.cfg.max_positions);
  pos_ = 0;
  // The same size keeps the cache's memory, and with it a captured decode graph (which points into it).
  const bool keep = !cache_.k.empty() && cache_.batch == batch && cache_.max_len == max_len;
  auto run = [&]() {
    if (!keep) {
      cache_.reset(w_, batch, max_len);
      return;
    }
    for (size_t i = 0; i < cache_.k.size(); ++i) {
      cache_.k[i].zero_();
      cache_.v[i].zero_();
    }
  };
#ifdef GLVQ_WITH_TORCH_CUDA
  if (cuda_) {
    if (!keep) cuda_state_reset(*cuda_);
    cuda_on_stream(*cuda_, run);
    return;
  }
#endif
  run();
}

at::Tensor Decoder::forward(const at::Tensor& tokens, bool all_logits) {
  GLVQ_CHECK(tokens.dim() == 2 && tokens.size(0) == cache_.batch && tokens.size(1) >= 1,
             "forward needs tokens [{}, n >= 1], got {} dimensions", cache_.batch, tokens.dim());
  const int64_t n = tokens.size(1);
  GLVQ_CHECK(pos_ + n <= cache_.max_len, "{} more tokens after {} exceed the cache of {} (reset with a larger "
             "length)", n, pos_, cache_.max_len);
  const at::Tensor t = tokens.to(at::kLong).contiguous();
  const int64_t lo = t.min().item<int64_t>(), hi = t.max().item<int64_t>();
  GLVQ_CHECK(lo >= 0 && hi < w_.cfg.vocab, "token id {} is outside the vocabulary 0..{}", lo < 0 ? lo : hi,
             w_.cfg.vocab - 1);
  at::Tensor logits;
#ifdef GLVQ_WITH_TORCH_CUDA
  if (cuda_) logits = cuda_forward(*cuda_, w_, cache_, t, pos_, all_logits);
#endif
  if (!logits.defined()) {
    const at::Tensor qpos = at::arange(pos_, pos_ + n, at::TensorOptions().dtype(at::kLong));
    logits = gen_forward(w_, cache_, t, qpos, pos_ + n, all_logits);
  }
  pos_ += n;
  return logits;
}

void Decoder::synchronize() {
#ifdef GLVQ_WITH_TORCH_CUDA
  if (cuda_) cuda_synchronize(*cuda_);
#endif
}

std::string Decoder::device_name() const {
#ifdef GLVQ_WITH_TORCH_CUDA
  if (cuda_) return cuda_device_name();
#endif
  return "cpu";
}

std::string Decoder::linear_kinds() const {
  std::map<std::string, int> n;
  for (const GenBlock& b : w_.blocks)
    for (const auto& l : b.lin) ++n[l->kind()];
  std::string s;
  for (const auto& [k, c] : n) s += fmt::format("{}{} {}", s.empty() ? "" : ", ", c, k);
  return s;
}

}  // namespace glvq
