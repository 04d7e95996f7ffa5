#include "finetune/e2e_finetune.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include "common/error.h"
#include "common/log.h"
#include "common/preempt.h"
#include "common/splitmix.h"
#include "finetune/adam.h"
#include "finetune/tunable_linear.h"
#include "nn/llama.h"

namespace glvq {
namespace {

/// The weight of linear L of block B, or undefined for the FP weight.
using WeightFn = std::function<at::Tensor(int b, int l)>;

// Message streams between neighbouring ranks (MPI keeps each stream's order).
constexpr int kTagFp = 7301, kTagQuant = 7302, kTagGrad = 7303;

/// A rank's part of the FP model on one device: its blocks, and the embedding (first
/// rank) or final norm and lm_head (last rank), run with any of its linears replaced.
class ModelPart {
 public:
  ModelPart(ModelFiles& files, const LlamaConfig& cfg, int64_t T, const at::Device& device, const E2ePipeline& p)
      : cfg_(cfg),
        device_(device),
        pipe_(p),
        head_(load_head(files, cfg, p.first(), p.last(), device)),
        rope_(make_rope(cfg, T, device)),
        first_block_(p.first_block) {
    const int end = p.end_block < 0 ? cfg.n_layers : p.end_block;
    for (int b = first_block_; b < end; ++b) blocks_.push_back(load_block(files, cfg, b, device));
  }

  int first_block() const { return first_block_; }
  int end_block() const { return first_block_ + int(blocks_.size()); }

  /// What enters this rank's first block for TOKENS [n, T]: the embedding, or the previous
  /// rank's output on stream TAG.
  at::Tensor input(const at::Tensor& tokens, int tag) const {
    if (!pipe_.first()) return pipe_.recv(pipe_.rank - 1, tag);
    const int64_t n = tokens.size(0), T = tokens.size(1);
    return head_.embed.index_select(0, tokens.reshape({-1}).to(device_, at::kLong)).view({n, T, cfg_.hidden});
  }

  /// This rank's blocks on X [n, T, hidden].
  at::Tensor blocks(at::Tensor x, const WeightFn& weight) const {
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const int b = first_block_ + int(i);
      BlockWeights w = blocks_[i];
      for (int l = 0; l < kNumLinears; ++l) {
        at::Tensor q = weight ? weight(b, l) : at::Tensor();
        if (q.defined()) w.w[l] = q;
      }
      x = block_forward(w, cfg_, rope_, x);
    }
    return x;
  }

  /// Next-token log-probabilities [n, T-1, vocab] from the last block's output X (last rank).
  at::Tensor log_probs(const at::Tensor& x) const {
    const int64_t T = x.size(1);
    const at::Tensor h = rms_norm(x.narrow(1, 0, T - 1), head_.norm, cfg_.rms_eps);
    return at::log_softmax(at::linear(h, head_.lm_head), -1);
  }

  /// The whole forward without gradients: log-probabilities on the last rank, undefined on
  /// the others (which pass their output on along stream TAG).
  at::Tensor forward(const at::Tensor& tokens, const WeightFn& weight, int tag) const {
    const at::Tensor y = blocks(input(tokens, tag), weight);
    if (pipe_.last()) return log_probs(y);
    pipe_.send(y, pipe_.rank + 1, tag);
    return at::Tensor();
  }

 private:
  LlamaConfig cfg_;
  at::Device device_;
  const E2ePipeline& pipe_;
  HeadWeights head_;
  Rope rope_;
  int first_block_ = 0;
  std::vector<BlockWeights> blocks_;
};

/// Sum over positions of KL(P || Q) from log-probabilities [..., vocab], and the count.
at::Tensor kl_per_position(const at::Tensor& lp, const at::Tensor& lq) { return (lp.exp() * (lp - lq)).sum(-1); }

/// Tensor names of every linear, indexed [block][linear].
std::vector<std::array<std::string, kNumLinears>> linear_names(const LlamaConfig& cfg) {
  std::vector<std::array<std::string, kNumLinears>> names(size_t(cfg.n_layers));
  for (int b = 0; b < cfg.n_layers; ++b)
    for (int l = 0; l < kNumLinears; ++l) names[size_t(b)][size_t(l)] = linear_tensor_name(b, static_cast<Linear>(l));
  return names;
}

/// Dequantized weights of LAYERS on DEVICE, indexed [block][linear] (undefined: FP or
/// another rank's block).
std::vector<std::array<at::Tensor, kNumLinears>> stored_weights(const LlamaConfig& cfg,
                                                                const std::map<std::string, QuantizedLinear>& layers,
                                                                const at::Device& device, int first = 0,
                                                                int end = -1) {
  const auto names = linear_names(cfg);
  std::vector<std::array<at::Tensor, kNumLinears>> W(names.size());
  for (size_t b = size_t(first); b < (end < 0 ? names.size() : size_t(end)); ++b)
    for (int l = 0; l < kNumLinears; ++l) {
      auto it = layers.find(names[b][size_t(l)]);
      if (it != layers.end()) W[b][size_t(l)] = dequantize_on(it->second, device);
    }
  return W;
}

/// Mean KL per position over rows SEQS of TOKENS, BATCH rows at a time (no gradients);
/// every rank of the pipeline gets it.
double mean_kl(const ModelPart& m, const E2ePipeline& p, const at::Tensor& tokens, const std::vector<int64_t>& seqs,
               int batch, const WeightFn& weight) {
  c10::NoGradGuard no_grad;
  double sum = 0;
  int64_t count = 0;
  for (size_t i = 0; i < seqs.size(); i += size_t(batch)) {
    const size_t e = std::min(seqs.size(), i + size_t(batch));
    const at::Tensor idx = at::tensor(std::vector<int64_t>(seqs.begin() + long(i), seqs.begin() + long(e)), at::kLong);
    const at::Tensor tok = tokens.index_select(0, idx);
    const at::Tensor lp = m.forward(tok, nullptr, kTagFp), lq = m.forward(tok, weight, kTagQuant);
    if (!p.last()) continue;
    const at::Tensor k = kl_per_position(lp, lq);
    sum += k.to(at::kDouble).sum().item<double>();
    count += k.numel();
  }
  if (p.size > 1) {
    sum = p.allreduce_sum(sum);
    count = int64_t(p.allreduce_sum(double(count)));
  }
  return sum / double(std::max<int64_t>(1, count));
}

WeightFn from_table(const std::vector<std::array<at::Tensor, kNumLinears>>& W) {
  return [&W](int b, int l) { return W[size_t(b)][size_t(l)]; };
}

}  // namespace

nlohmann::json E2eFinetuneResult::to_json() const {
  return {{"heldout_kl_before", heldout_before}, {"heldout_kl_after", heldout_after},
          {"train_kl_start", train_before},      {"train_kl_end", train_after},
          {"steps", steps},                      {"best_step", best_step},
          {"train_seqs", train_seqs},            {"heldout_seqs", heldout_seqs},
          {"heldout_kl_history", heldout_history}, {"kept", kept},
          {"seconds", seconds}};
}

double e2e_mean_kl(ModelFiles& files, const LlamaConfig& cfg, const at::Tensor& tokens,
                   const std::map<std::string, QuantizedLinear>& layers, const at::Device& device) {
  GLVQ_CHECK(tokens.dim() == 2 && tokens.size(1) >= 2, "e2e_mean_kl needs token ids [n, T >= 2]");
  const E2ePipeline one;
  const ModelPart m(files, cfg, tokens.size(1), device, one);
  const auto W = stored_weights(cfg, layers, device);
  std::vector<int64_t> all(size_t(tokens.size(0)));
  for (size_t i = 0; i < all.size(); ++i) all[i] = int64_t(i);
  return mean_kl(m, one, tokens, all, 1, from_table(W));
}

E2eFinetuneResult finetune_e2e(ModelFiles& files, const LlamaConfig& cfg, const at::Tensor& tokens,
                               std::map<std::string, QuantizedLinear>& layers, const at::Device& device,
                               const BlockFinetuneOptions& opt, const E2ePipeline& pipe) {
  const auto t0 = std::chrono::steady_clock::now();
  GLVQ_CHECK(pipe.size >= 1 && pipe.rank >= 0 && pipe.rank < pipe.size &&
                 (pipe.size == 1 || (pipe.send && pipe.recv && pipe.allreduce_sum)) && pipe.first_block >= 0 &&
                 pipe.end_block <= cfg.n_layers && (pipe.end_block < 0 || pipe.end_block > pipe.first_block),
             "end-to-end fine-tuning: rank {} of {} with blocks [{}, {}) is not a pipeline over the model's {} blocks",
             pipe.rank, pipe.size, pipe.first_block, pipe.end_block, cfg.n_layers);
  GLVQ_CHECK(opt.steps >= 0 && opt.batch >= 1 && opt.eval_every >= 1 && opt.patience >= 1 && opt.lr > 0 &&
                 opt.heldout > 0 && opt.heldout < 1,
             "end-to-end fine-tuning options out of range (steps {}, batch {}, eval_every {}, patience {}, lr {}, "
             "heldout {})", opt.steps, opt.batch, opt.eval_every, opt.patience, opt.lr, opt.heldout);
  GLVQ_CHECK(tokens.dim() == 2 && tokens.size(1) >= 2, "end-to-end fine-tuning needs token ids [n, T >= 2]");
  const int64_t n = tokens.size(0), T = tokens.size(1);
  GLVQ_CHECK(n >= 2, "end-to-end fine-tuning needs at least 2 calibration sequences (one held out), got {}; raise "
             "calib.samples or turn quant.finetune.e2e off", n);
  const std::vector<int64_t> held = finetune_heldout_sequences(n, opt);
  std::vector<int64_t> train;
  for (int64_t i = 0; i < n; ++i)
    if (!std::binary_search(held.begin(), held.end(), i)) train.push_back(i);
  uint64_t rng = opt.seed ^ 0x2545f4914f6cdd1dull;  // the batch order: a stream of its own
  auto shuffle = [&rng](std::vector<int64_t>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[splitmix64(rng) % i]);
  };

  E2eFinetuneResult res;
  res.train_seqs = static_cast<int>(train.size());
  res.heldout_seqs = static_cast<int>(held.size());
  const ModelPart m(files, cfg, T, device, pipe);
  const int b0 = m.first_block(), b1 = m.end_block();
  const auto names = linear_names(cfg);
  std::vector<std::array<std::unique_ptr<TunableLinear>, kNumLinears>> tl(names.size());
  std::vector<TunableLinear*> all;
  for (size_t b = size_t(b0); b < size_t(b1); ++b)
    for (int l = 0; l < kNumLinears; ++l) {
      auto it = layers.find(names[b][size_t(l)]);
      if (it == layers.end()) continue;
      tl[b][size_t(l)] = std::make_unique<TunableLinear>(it->second, device);
      all.push_back(tl[b][size_t(l)].get());
    }
  GLVQ_CHECK(!all.empty(), "end-to-end fine-tuning: no quantized linear of blocks [{}, {}) of this model", b0, b1);
  const WeightFn tuned = [&tl](int b, int l) {
    const auto& t = tl[size_t(b)][size_t(l)];
    return t ? t->weight() : at::Tensor();
  };
  {
    const auto W0 = stored_weights(cfg, layers, device, b0, b1);
    res.heldout_before = mean_kl(m, pipe, tokens, held, opt.batch, from_table(W0));
  }
  log_info("finetune e2e: held-out KL {:.5f} over {} sequences of {} tokens, {} to train, {} linears", res.heldout_before,
           held.size(), T, train.size(), all.size());

  double best = res.heldout_before, window = 0;
  int window_n = 0, bad = 0;
  std::vector<std::vector<at::Tensor>> best_values;
  for (const TunableLinear* t : all) best_values.push_back(t->snapshot());
  std::vector<std::vector<AdamState>> adam(all.size());
  for (size_t i = 0; i < all.size(); ++i) adam[i].resize(all[i]->params().size());
  size_t cursor = train.size();
  for (int step = 1; step <= opt.steps; ++step) {
    throw_if_preempted("end-to-end fine-tuning (between steps; the checkpoint is not written yet)");
    std::vector<int64_t> batch;
    while (batch.size() < size_t(opt.batch)) {
      if (cursor >= train.size()) {
        shuffle(train);
        cursor = 0;
      }
      batch.push_back(train[cursor++]);
      if (batch.size() >= train.size()) break;  // fewer training sequences than a batch
    }
    const at::Tensor tok = tokens.index_select(0, at::tensor(batch, at::kLong));
    at::Tensor target;  // the last rank's
    {
      c10::NoGradGuard no_grad;
      target = m.forward(tok, nullptr, kTagFp);
    }
    double loss_value = 0;
    {
      c10::AutoGradMode grad(true);
      // A rank's input is a leaf: the gradient the backward leaves in it is what the
      // previous rank's backward starts from.
      at::Tensor x = m.input(tok, kTagQuant);
      if (!pipe.first()) x = x.detach().requires_grad_(true);
      const at::Tensor y = m.blocks(x, tuned);
      if (pipe.last()) {
        const at::Tensor loss = kl_per_position(target, m.log_probs(y)).mean();
        loss.backward();
        loss_value = loss.item<double>();
      } else {
        pipe.send(y.detach(), pipe.rank + 1, kTagQuant);
        y.backward(pipe.recv(pipe.rank + 1, kTagGrad));
      }
      if (!pipe.first()) pipe.send(x.grad(), pipe.rank - 1, kTagGrad);
    }
    if (pipe.size > 1) loss_value = pipe.allreduce_sum(loss_value);
    {
      c10::NoGradGuard no_grad;
      for (size_t i = 0; i < all.size(); ++i)
        for (size_t p = 0; p < all[i]->params().size(); ++p) {
          at::Tensor leaf = all[i]->params()[p];
          adam[i][p].step(leaf, opt.lr, step);
          leaf.mutable_grad().reset();
        }
    }
    if (step <= opt.eval_every) res.train_before += loss_value / double(std::min(opt.eval_every, opt.steps));
    window += loss_value;
    ++window_n;
    res.steps = step;
    if (step % opt.eval_every != 0 && step != opt.steps) continue;
    res.train_after = window / double(window_n);
    window = 0;
    window_n = 0;
    const double e = mean_kl(m, pipe, tokens, held, opt.batch, tuned);
    res.heldout_history.push_back(e);
    if (e < best) {
      best = e;
      res.best_step = step;
      for (size_t i = 0; i < all.size(); ++i) best_values[i] = all[i]->snapshot();
      bad = 0;
    } else {
      ++bad;
    }
    log_info("finetune e2e: step {}/{}: train KL {:.5f}, held-out {:.5f} (start {:.5f}, best {:.5f} at step {})", step,
             opt.steps, res.train_after, e, res.heldout_before, best, res.best_step);
    if (bad >= opt.patience) break;
  }
  // What counts is the stored (fp16-rounded) result, on the held-out sequences.
  std::map<std::string, QuantizedLinear> stored;
  for (size_t b = size_t(b0); b < size_t(b1); ++b)
    for (int l = 0; l < kNumLinears; ++l) {
      const auto& t = tl[b][size_t(l)];
      if (!t) continue;
      const size_t i = size_t(std::find(all.begin(), all.end(), t.get()) - all.begin());
      t->restore(best_values[i]);
      QuantizedLinear q = t->stored();
      const QuantizedLinear& before = layers.at(names[b][size_t(l)]);
      q.loss_init = before.loss_init;
      q.seconds = before.seconds;
      stored.emplace(names[b][size_t(l)], std::move(q));
    }
  double after = res.heldout_before;
  if (res.best_step > 0) {
    const auto W1 = stored_weights(cfg, stored, device, b0, b1);
    after = mean_kl(m, pipe, tokens, held, opt.batch, from_table(W1));
  }
  res.kept = after < res.heldout_before;
  if (res.kept) {
    for (auto& [name, q] : stored) layers[name] = std::move(q);
    res.heldout_after = after;
  } else {
    res.heldout_after = res.heldout_before;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("finetune e2e: held-out KL {:.5f} -> {:.5f}, train KL {:.5f} -> {:.5f}; {} steps, best at {}, {} in {:.1f}s",
           res.heldout_before, res.heldout_after, res.train_before, res.train_after, res.steps, res.best_step,
           res.kept ? "kept" : "not kept (no held-out gain)", res.seconds);
  return res;
}

}  // namespace glvq
