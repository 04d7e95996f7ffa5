#pragma once
/// Block fine-tuning: with a block's seven linears quantized (codes fixed), tune
/// their continuous parameters (finetune/tunable_linear.h) with Adam to minimise
/// the block-output error against the full-precision block on the same inputs,
///   e(x) = mean over tokens of ||block_fp(x) - block_q(x)||^2,
/// on the calibration sequences the rank holds. A seeded fraction of them is
/// held out: the held-out error is measured every eval_every steps, the best
/// iterate is kept, and training stops after `patience` measurements without a
/// gain. The tuned parameters are then rounded to their stored dtypes; the
/// result is kept only if the held-out error of what is stored is below the
/// error before, so fine-tuning never makes a block worse on the held-out set.
#include "config/config.h"
#include "model/llama_config.h"
#include "nn/llama.h"
#include "quant/quantizer.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace glvq {

struct BlockFinetuneOptions {
  int steps = 100;        ///< most Adam steps
  double lr = 1e-3;       ///< in the parameters' units (relative G, log scale, log mu)
  int batch = 4;          ///< sequences per step
  double heldout = 0.125; ///< fraction of the sequences held out (at least one)
  int eval_every = 10;    ///< steps between held-out measurements
  int patience = 3;       ///< measurements without a gain before stopping
  uint64_t seed = 0;      ///< picks the held-out sequences and the batch order
};

/// The options block and end-to-end fine-tuning share from F (batch, heldout, eval_every,
/// patience), with the caller's STEPS, LR and SEED.
inline BlockFinetuneOptions finetune_options(const FinetuneConfig& f, int steps, double lr, uint64_t seed) {
  BlockFinetuneOptions o;
  o.steps = steps;
  o.lr = lr;
  o.batch = f.batch;
  o.heldout = f.heldout;
  o.eval_every = f.eval_every;
  o.patience = f.patience;
  o.seed = seed;
  return o;
}

struct BlockFinetuneResult {
  double heldout_before = 0, heldout_after = 0;  ///< e on the held-out sequences (after: as stored)
  double train_before = 0, train_after = 0;      ///< e on the training sequences
  double heldout_reference = 0;                  ///< mean ||block_fp(x) - x||^2 per token (held out)
  int steps = 0, best_step = 0;                  ///< steps run; the step of the kept iterate (0 = start)
  int train_seqs = 0, heldout_seqs = 0;
  std::vector<double> heldout_history;  ///< e on the held-out sequences at each measurement (fp32 masters)
  bool kept = false;  ///< the tuned layers replaced the input ones
  double seconds = 0;
  nlohmann::json to_json() const;
};

/// The held-out sequences among N (N >= 2; ascending indices in input order,
/// tensor by tensor, row by row): ceil(heldout * N) of them, at least 1 and at most N - 1.
std::vector<int64_t> finetune_heldout_sequences(int64_t n, const BlockFinetuneOptions& opt);

/// What one fine-tuning run moves: the block's seven weights as a function of LEAVES.
struct BlockTuning {
  std::vector<at::Tensor> leaves;  ///< fp32 autograd leaves on the device
  /// The weights, differentiable in the leaves.
  std::function<std::array<at::Tensor, kNumLinears>()> weights;
  /// The weights as they would be stored from the leaves now (fp16-rounded parameters):
  /// what the keep decision scores.
  std::function<std::array<at::Tensor, kNumLinears>()> stored;
};

/// The loop the block fine-tunings share: Adam on T's leaves against FP's output on INPUTS
/// (seeded held-out share, patience, best iterate). On return the leaves hold the best
/// iterate when its stored weights have a lower held-out error than before (res.kept), else
/// their starting values.
BlockFinetuneResult tune_block(const BlockWeights& fp, const LlamaConfig& cfg, const Rope& rope,
                               const std::vector<at::Tensor>& inputs, const BlockTuning& T, const at::Device& device,
                               const BlockFinetuneOptions& opt, const std::string& label);

/// Tunes LAYERS (the block's linears, indexed by Linear; replaced by the tuned
/// layers when the result is kept) against FP (fp32 weights on DEVICE) on INPUTS
/// (CPU tensors [B, T, hidden], the block's input activations). LABEL names the
/// block in log lines. Needs at least two sequences (one to train, one held out).
BlockFinetuneResult finetune_block(const BlockWeights& fp, const LlamaConfig& cfg, const Rope& rope,
                                   const std::vector<at::Tensor>& inputs,
                                   std::array<QuantizedLinear, kNumLinears>& layers, const at::Device& device,
                                   const BlockFinetuneOptions& opt, const std::string& label);

/// QuIP#'s variant while a block is quantized layer by layer: linears [0, DONE) are quantized
/// (LAYERS, codes fixed), linears [DONE, 7) are still full precision (W, fp32 weights);
/// tunes the quantized ones' continuous parameters and the others' whole weights together
/// against FP's output, so the later linears are quantized from weights that make up for the
/// earlier ones' error. When the result is kept, LAYERS [0, DONE) and W [DONE, 7) are
/// replaced. DONE = 7 is finetune_block.
BlockFinetuneResult finetune_partial_block(const BlockWeights& fp, const LlamaConfig& cfg, const Rope& rope,
                                           const std::vector<at::Tensor>& inputs,
                                           std::array<QuantizedLinear, kNumLinears>& layers, int done,
                                           std::array<at::Tensor, kNumLinears>& W, const at::Device& device,
                                           const BlockFinetuneOptions& opt, const std::string& label);

}  // namespace glvq
