#pragma once
/// End-to-end fine-tuning (quant.finetune.e2e, beyond the paper): with every
/// code fixed, the continuous parameters of all quantized linears (GLVQ: each
/// group's G, scale and, with companding, mu; RTN/GPTQ: the scales; see
/// finetune/tunable_linear.h) are tuned together against the FP model's
/// next-token distributions. The loss is the mean over positions of
/// KL(P_fp || P_quant) on calibration sequences (the quantity validate reports
/// as kl_mean). A seeded share of the sequences is held out: measured every
/// eval_every steps, the best iterate kept, stopped after `patience`
/// measurements without a gain. The tuned layers, rounded to what the format
/// stores (fp16), replace the input ones only when their held-out KL is below
/// the one before, so the model is never worse on the held-out sequences.
///
/// One rank holds the whole model on its device (its unquantized weights in
/// fp32, the activations of a batch kept for the backward pass), or the ranks
/// of a pipeline (E2ePipeline) each hold their blocks: activations go forward
/// rank to rank, the last rank computes the loss, and the gradient with
/// respect to each rank's input goes back the same way, so every rank tunes
/// its own layers. Both compute the same steps.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "finetune/block_finetune.h"
#include "model/llama_config.h"
#include "model/model_files.h"
#include "quant/quantizer.h"

namespace glvq {

struct E2eFinetuneResult {
  double heldout_before = 0, heldout_after = 0;  ///< mean KL per position on the held-out sequences (after: as stored)
  double train_before = 0, train_after = 0;      ///< the same on the training sequences (after: the best iterate's)
  int steps = 0, best_step = 0;                  ///< steps run; the step of the kept iterate (0 = start)
  int train_seqs = 0, heldout_seqs = 0;
  std::vector<double> heldout_history;           ///< held-out KL at each measurement (fp32 masters)
  bool kept = false;                             ///< the tuned layers replaced the input ones
  double seconds = 0;
  nlohmann::json to_json() const;
};

/// Mean over positions 0..T-2 of KL(P_fp || P_quant) for TOKENS [n, T] (int64):
/// the model of FILES with the linears of LAYERS (by tensor name; a missing one
/// stays FP) against the FP model, on DEVICE. Reference for tests and reports.
double e2e_mean_kl(ModelFiles& files, const LlamaConfig& cfg, const at::Tensor& tokens,
                   const std::map<std::string, QuantizedLinear>& layers, const at::Device& device);

/// A rank's place in a pipeline over blocks, and how it talks to its neighbours
/// (jobs/ fills it from the MPI plan; the default is one rank with every block).
struct E2ePipeline {
  int rank = 0, size = 1;
  int first_block = 0, end_block = -1;  ///< this rank's blocks [first, end); -1: every block
  /// Sends T to rank DST / receives from SRC (on the tuning device); TAG orders the streams.
  std::function<void(const at::Tensor& t, int dst, int tag)> send;
  std::function<at::Tensor(int src, int tag)> recv;
  /// The sum of X over the ranks (every rank gets it).
  std::function<double(double x)> allreduce_sum;
  bool first() const { return rank == 0; }
  bool last() const { return rank == size - 1; }
};

/// Tunes LAYERS (replaced by the tuned layers when the result is kept) on the
/// calibration sequences TOKENS [n, T] (int64 token ids, n >= 2) with OPT's
/// steps, lr, batch, heldout, eval_every, patience and seed. In a pipeline every
/// rank calls it with the same tokens and options and LAYERS holding (at least)
/// the layers of its blocks; each rank tunes those, and all get the same result.
E2eFinetuneResult finetune_e2e(ModelFiles& files, const LlamaConfig& cfg, const at::Tensor& tokens,
                               std::map<std::string, QuantizedLinear>& layers, const at::Device& device,
                               const BlockFinetuneOptions& opt, const E2ePipeline& pipe = E2ePipeline());

}  // namespace glvq
