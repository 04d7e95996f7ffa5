#include "finetune/block_finetune.h"

#include "common/error.h"
#include "common/log.h"
#include "common/preempt.h"
#include "common/splitmix.h"
#include "finetune/adam.h"
#include "finetune/tunable_linear.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <utility>

namespace glvq {
namespace {

/// One calibration sequence: row ROW of inputs[TENSOR].
struct Seq {
  size_t tensor;
  int64_t row;
};

class BlockData {
 public:
  BlockData(const std::vector<at::Tensor>& inputs, std::vector<at::Tensor> targets)
      : inputs_(inputs), targets_(std::move(targets)) {}
  /// Inputs and targets [n, T, hidden] of SEQS[first, first + n) on DEVICE.
  std::pair<at::Tensor, at::Tensor> batch(const std::vector<Seq>& seqs, size_t first, size_t n,
                                          const at::Device& device) const {
    std::vector<at::Tensor> x, y;
    for (size_t i = first; i < std::min(seqs.size(), first + n); ++i) {
      x.push_back(inputs_[seqs[i].tensor].narrow(0, seqs[i].row, 1));
      y.push_back(targets_[seqs[i].tensor].narrow(0, seqs[i].row, 1));
    }
    return {at::cat(x).to(device, at::kFloat), at::cat(y).to(device, at::kFloat)};
  }

 private:
  const std::vector<at::Tensor>& inputs_;
  std::vector<at::Tensor> targets_;
};

/// Sum over tokens of ||a - b||^2 and the token count.
std::pair<double, int64_t> sq_error(const at::Tensor& a, const at::Tensor& b) {
  return {(a - b).to(at::kDouble).square().sum().item<double>(), a.numel() / a.size(-1)};
}

BlockWeights with_linears(const BlockWeights& fp, const std::array<at::Tensor, kNumLinears>& w) {
  BlockWeights q = fp;
  for (int l = 0; l < kNumLinears; ++l) q.w[l] = w[l];
  return q;
}

}  // namespace

std::vector<int64_t> finetune_heldout_sequences(int64_t n, const BlockFinetuneOptions& opt) {
  GLVQ_ASSERT(n >= 2);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[size_t(i)] = i;
  uint64_t rng = opt.seed;
  for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[splitmix64(rng) % i]);
  const int64_t k = std::min<int64_t>(n - 1, std::max<int64_t>(1, int64_t(std::ceil(opt.heldout * double(n)))));
  perm.resize(static_cast<size_t>(k));
  std::sort(perm.begin(), perm.end());
  return perm;
}

nlohmann::json BlockFinetuneResult::to_json() const {
  return {{"heldout_before", heldout_before}, {"heldout_after", heldout_after},
          {"train_before", train_before},     {"train_after", train_after},
          {"heldout_reference", heldout_reference},
          {"heldout_rel_before", heldout_before / std::max(1e-30, heldout_reference)},
          {"heldout_rel_after", heldout_after / std::max(1e-30, heldout_reference)},
          {"steps", steps},                   {"best_step", best_step},
          {"train_seqs", train_seqs},         {"heldout_seqs", heldout_seqs},
          {"kept", kept},                     {"seconds", seconds}};
}

BlockFinetuneResult tune_block(const BlockWeights& fp, const LlamaConfig& cfg, const Rope& rope,
                               const std::vector<at::Tensor>& inputs, const BlockTuning& T, const at::Device& device,
                               const BlockFinetuneOptions& opt, const std::string& label) {
  const auto t0 = std::chrono::steady_clock::now();
  GLVQ_CHECK(opt.steps >= 0 && opt.batch >= 1 && opt.eval_every >= 1 && opt.patience >= 1 && opt.lr > 0 &&
                 opt.heldout > 0 && opt.heldout < 1,
             "block fine-tuning options out of range (steps {}, batch {}, eval_every {}, patience {}, lr {}, "
             "heldout {})", opt.steps, opt.batch, opt.eval_every, opt.patience, opt.lr, opt.heldout);
  // Sequences in input order (tensor by tensor, row by row); a seeded set of them is held out.
  std::vector<Seq> all;
  for (size_t i = 0; i < inputs.size(); ++i)
    for (int64_t r = 0; r < inputs[i].size(0); ++r) all.push_back({i, r});
  GLVQ_CHECK(all.size() >= 2, "{}: block fine-tuning needs at least 2 calibration sequences (one held out), the rank "
             "holds {}; raise calib.samples or turn quant.finetune.block off", label, all.size());
  const std::vector<int64_t> held_idx = finetune_heldout_sequences(int64_t(all.size()), opt);
  std::vector<bool> is_held(all.size(), false);
  std::vector<Seq> held, train;
  for (int64_t i : held_idx) {
    is_held[size_t(i)] = true;
    held.push_back(all[size_t(i)]);
  }
  for (size_t i = 0; i < all.size(); ++i)
    if (!is_held[i]) train.push_back(all[i]);
  uint64_t rng = opt.seed ^ 0x5bd1e995ull;  // the batch order: a stream of its own
  auto shuffle = [&rng](std::vector<Seq>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[splitmix64(rng) % i]);
  };

  BlockFinetuneResult res;
  res.train_seqs = static_cast<int>(train.size());
  res.heldout_seqs = static_cast<int>(held.size());
  std::vector<at::Tensor> targets;
  {
    c10::NoGradGuard no_grad;
    // Targets are held like the inputs (calib.activation_dtype): the two dominate a rank's RSS.
    for (const auto& x : inputs)
      targets.push_back(block_forward(fp, cfg, rope, x.to(device, at::kFloat)).to(at::kCPU, x.scalar_type()));
  }
  const BlockData data(inputs, std::move(targets));
  // Mean per-token error of the block with linears W over SEQS.
  auto error_of = [&](const std::array<at::Tensor, kNumLinears>& W, const std::vector<Seq>& seqs,
                      bool against_input = false) {
    c10::NoGradGuard no_grad;
    const BlockWeights q = with_linears(fp, W);
    double sum = 0;
    int64_t tokens = 0;
    for (size_t i = 0; i < seqs.size(); i += size_t(opt.batch)) {
      auto [x, y] = data.batch(seqs, i, size_t(opt.batch), device);
      auto [s, n] = sq_error(against_input ? x : block_forward(q, cfg, rope, x), y);
      sum += s;
      tokens += n;
    }
    return sum / double(std::max<int64_t>(1, tokens));
  };
  auto snapshot = [&T]() {
    std::vector<at::Tensor> v;
    for (const auto& p : T.leaves) v.push_back(p.detach().clone());
    return v;
  };
  auto restore = [&T](const std::vector<at::Tensor>& v) {
    c10::NoGradGuard no_grad;
    for (size_t i = 0; i < T.leaves.size(); ++i) T.leaves[i].copy_(v[i]);
  };

  const auto W0 = T.stored();
  res.heldout_reference = error_of(W0, held, /*against_input=*/true);
  res.heldout_before = error_of(W0, held);
  res.train_before = error_of(W0, train);
  log_info("finetune: {} held-out error {:.4e} (relative {:.4e}) over {} sequences, {} to train", label,
           res.heldout_before, res.heldout_before / std::max(1e-30, res.heldout_reference), held.size(),
           train.size());

  double best = res.heldout_before;
  const std::vector<at::Tensor> start = snapshot();
  std::vector<at::Tensor> best_values = start;
  std::vector<AdamState> adam(T.leaves.size());
  size_t cursor = train.size();
  int bad = 0;
  for (int step = 1; step <= opt.steps; ++step) {
    throw_if_preempted("block fine-tuning (between steps; the block's file is not written yet)");
    if (cursor >= train.size()) {
      shuffle(train);
      cursor = 0;
    }
    auto [x, y] = data.batch(train, cursor, size_t(opt.batch), device);
    cursor += size_t(opt.batch);
    {
      c10::AutoGradMode grad(true);
      const at::Tensor out = block_forward(with_linears(fp, T.weights()), cfg, rope, x);
      (out - y).square().sum(-1).mean().backward();
    }
    {
      c10::NoGradGuard no_grad;
      for (size_t p = 0; p < T.leaves.size(); ++p) {
        at::Tensor leaf = T.leaves[p];
        adam[p].step(leaf, opt.lr, step);
        leaf.mutable_grad().reset();
      }
    }
    res.steps = step;
    if (step % opt.eval_every != 0 && step != opt.steps) continue;
    const double e = error_of(T.weights(), held);
    res.heldout_history.push_back(e);
    if (e < best) {
      best = e;
      res.best_step = step;
      best_values = snapshot();
      bad = 0;
    } else {
      ++bad;
    }
    log_info("finetune: {} step {}/{}: held-out {:.4e} (start {:.4e}, best {:.4e} at step {})", label, step,
             opt.steps, e, res.heldout_before, best, res.best_step);
    if (bad >= opt.patience) break;
  }
  restore(best_values);
  // What counts is the stored result, on the held-out sequences.
  const auto W1 = res.best_step > 0 ? T.stored() : W0;
  const double after = res.best_step > 0 ? error_of(W1, held) : res.heldout_before;
  res.kept = after < res.heldout_before;
  if (res.kept) {
    res.heldout_after = after;
    res.train_after = error_of(W1, train);
  } else {
    restore(start);
    res.heldout_after = res.heldout_before;
    res.train_after = res.train_before;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("finetune: {} held-out error {:.4e} -> {:.4e} (relative {:.4e} -> {:.4e}), train {:.4e} -> {:.4e}; "
           "{} steps, best at {}, {} in {:.1f}s",
           label, res.heldout_before, res.heldout_after, res.heldout_before / std::max(1e-30, res.heldout_reference),
           res.heldout_after / std::max(1e-30, res.heldout_reference), res.train_before, res.train_after, res.steps,
           res.best_step, res.kept ? "kept" : "not kept (no held-out gain)", res.seconds);
  return res;
}

BlockFinetuneResult finetune_block(const BlockWeights& fp, const LlamaConfig& cfg, const Rope& rope,
                                   const std::vector<at::Tensor>& inputs,
                                   std::array<QuantizedLinear, kNumLinears>& layers, const at::Device& device,
                                   const BlockFinetuneOptions& opt, const std::string& label) {
  std::array<at::Tensor, kNumLinears> unused;
  return finetune_partial_block(fp, cfg, rope, inputs, layers, kNumLinears, unused, device, opt, label);
}

BlockFinetuneResult finetune_partial_block(const BlockWeights& fp, const LlamaConfig& cfg, const Rope& rope,
                                           const std::vector<at::Tensor>& inputs,
                                           std::array<QuantizedLinear, kNumLinears>& layers, int done,
                                           std::array<at::Tensor, kNumLinears>& W, const at::Device& device,
                                           const BlockFinetuneOptions& opt, const std::string& label) {
  GLVQ_ASSERT(done >= 0 && done <= kNumLinears);
  std::vector<TunableLinear> tl;
  for (int l = 0; l < done; ++l) tl.emplace_back(layers[size_t(l)], device);
  // A full-precision linear's leaf is its weight in units of the weight's RMS, so that one
  // learning rate fits it and the quantized layers' relative parameters alike.
  std::array<at::Tensor, kNumLinears> dense;
  std::array<double, kNumLinears> rms{};
  BlockTuning T;
  for (const auto& t : tl)
    for (const auto& p : t.params()) T.leaves.push_back(p);
  for (int l = done; l < kNumLinears; ++l) {
    const at::Tensor w = W[size_t(l)].to(device, at::kFloat);
    rms[size_t(l)] = std::max(1e-30, w.square().mean().sqrt().item<double>());
    dense[size_t(l)] = (w / rms[size_t(l)]).detach().clone().requires_grad_(true);
    T.leaves.push_back(dense[size_t(l)]);
  }
  T.weights = [&]() {
    std::array<at::Tensor, kNumLinears> out;
    for (int l = 0; l < kNumLinears; ++l)
      out[size_t(l)] = l < done ? tl[size_t(l)].weight() : dense[size_t(l)] * rms[size_t(l)];
    return out;
  };
  T.stored = [&]() {
    c10::NoGradGuard no_grad;
    std::array<at::Tensor, kNumLinears> out;
    for (int l = 0; l < kNumLinears; ++l)
      out[size_t(l)] = l < done ? dequantize_on(tl[size_t(l)].stored(), device) : dense[size_t(l)] * rms[size_t(l)];
    return out;
  };
  BlockFinetuneResult res = tune_block(fp, cfg, rope, inputs, T, device, opt, label);
  if (res.kept) {
    c10::NoGradGuard no_grad;
    for (int l = 0; l < done; ++l) {
      QuantizedLinear tuned = tl[size_t(l)].stored();
      tuned.loss_init = layers[size_t(l)].loss_init;
      tuned.seconds = layers[size_t(l)].seconds;
      layers[size_t(l)] = std::move(tuned);
    }
    for (int l = done; l < kNumLinears; ++l)
      W[size_t(l)] = (dense[size_t(l)] * rms[size_t(l)]).detach().to(W[size_t(l)].device(), W[size_t(l)].scalar_type());
  }
  return res;
}

}  // namespace glvq
