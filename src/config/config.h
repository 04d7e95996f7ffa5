#pragma once
/// The resolved experiment configuration (configs/*.yaml + --set overrides).
/// Every key is strict: unknown keys, wrong types and out-of-range values are
/// UsageErrors naming the file, line and key path (docs/CONFIG.md lists them all).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace glvq {

struct ModelConfig {
  std::string path;  ///< HF Llama-family directory (required)
};

struct DataConfig {
  std::string calib;  ///< calibration text (required when a quantizer runs)
  std::string eval;   ///< evaluation text (required)
};

struct CalibConfig {
  int ctx = 1024;            ///< tokens per calibration sequence, 16..131072
  int samples = 128;         ///< number of sequences, 1..100000
  uint64_t seed = 0;         ///< selects the sequences deterministically
  int micro_batch = 4;       ///< sequences per pipeline message, 1..1024
  std::string propagate = "quantized";  ///< fp | quantized
  /// float32 | bfloat16: how a rank holds the calibration activations between blocks (and block
  /// fine-tuning's targets) in host memory. At Llama-2-70B shapes with 128 x 4096 tokens they
  /// are 17 GB per copy in float32, the largest part of a rank's RSS; computation stays float32.
  std::string activation_dtype = "float32";
  /// Keep stats/block-<k>.h5 once block k's file is written. Off by default: a finished
  /// block never reads them again, and at Llama-2-70B shapes they are 4.1 GB per block.
  bool keep_stats = false;
};

struct EvalConfig {
  int ctx = 1024;        ///< 16..131072
  int max_chunks = 0;    ///< 0 = all chunks
  int micro_batch = 4;   ///< chunks per forward / pipeline message, 1..1024
};

struct GlvqConfig {
  int dim = 8;                  ///< lattice dimension d: 2..64, divides group_size
  int group_size = 128;         ///< input columns per group; 0 = the whole row
  int iters = 200;              ///< optimisation step cap, 0..100000
  double lr = 0.1;              ///< Adam learning rate on G and mu (in units of G0's scale; docs/GLVQ.md)
  double lambda = 1e-4;         ///< weight of ||G - G0||_F^2 (relative to the loss scale)
  double sigma_min = 1e-4;      ///< singular-value bounds for G, relative to G0's largest
  double sigma_max = 1e4;
  double eps = 1e-5;            ///< stop when the best loss gained less than this (relative) over 20 steps
  bool companding = false;      ///< learnable mu-law per group (measured not to help: docs/GLVQ.md)
  std::string rounding = "round_off";  ///< box code: round_off | nearest_plane (both Babai's; "babai" = round_off)
  bool bit_alloc = true;        ///< salience-driven N-1/N/N+1 allocation
  bool error_feedback = true;   ///< LDLQ-style feedback across groups
  bool incoherence = true;      ///< randomized Hadamard on W and H before grouping
  std::string code = "shaped";  ///< shaped (quant/glvq_codebook.h) | box
  int lloyd_iters = 6;          ///< shaped code: encode / least-squares G rounds, 0..1000
  int candidates = 4;           ///< shaped code: nearest sub-codes rescored under the layer metric, 1..16
};

struct GptqConfig {
  double damp = 0.01;
  bool act_order = true;
  int group_size = 128;
  bool static_groups = true;
};

struct RtnConfig {
  int group_size = 128;
};

/// Block fine-tuning (finetune/block_finetune.h): after a block's linears are quantized, their
/// continuous parameters (GLVQ: G, scale, mu; RTN/GPTQ: scale) are tuned against the FP block's output.
struct FinetuneConfig {
  bool block = false;     ///< on/off
  int steps = 400;        ///< most Adam steps per block, 1..1000000
  double lr = 1e-3;       ///< Adam learning rate (relative G, log scale, log mu)
  int batch = 4;          ///< calibration sequences per step, 1..1024
  double heldout = 0.125; ///< fraction of the calibration sequences held out for early stopping, (0, 1)
  int eval_every = 10;    ///< steps between held-out measurements, 1..1000000
  int patience = 3;       ///< measurements without a gain before stopping, 1..1000
  /// With block: also tune the not-yet-quantized linears' weights after each of the phases
  /// q/k/v, o, gate/up (QuIP#'s order), so the later linears make up for the earlier ones' error.
  bool unquantized = false;
  /// End-to-end fine-tuning (finetune/e2e_finetune.h), in gather: every quantized linear's continuous
  /// parameters against the FP model's next-token distributions; batch, heldout, eval_every and patience
  /// are shared with block fine-tuning.
  bool e2e = false;       ///< on/off
  int e2e_steps = 200;    ///< most Adam steps, 1..1000000
  double e2e_lr = 3e-4;   ///< Adam learning rate, in the same relative units as lr
};

struct QuantConfig {
  std::string method = "none";  ///< none | rtn | gptq | glvq
  double bits = 2.0;            ///< target bits per weight of the codes, 1..8
  GlvqConfig glvq;
  GptqConfig gptq;
  RtnConfig rtn;
  FinetuneConfig finetune;
  /// Within a block, each linear after the first phase is quantized under the statistics of the
  /// block with its earlier linears quantized, toward the least-squares weight that maps those
  /// inputs onto the FP block's activations (stats/sequential_target.h). GLVQ and GPTQ; RTN,
  /// which takes no statistics, ignores it.
  bool sequential = true;
};

/// Whether quant.sequential is on and changes what the method does (GLVQ and GPTQ, which take
/// input statistics; RTN ignores it).
bool sequential_applies(const QuantConfig& q);

struct Config {
  ModelConfig model;
  DataConfig data;
  CalibConfig calib;
  EvalConfig eval;
  QuantConfig quant;
  std::string device = "auto";  ///< auto | cpu | cuda
  std::string transport = "auto";  ///< auto | mpi | nccl: how activations move between GPU ranks
  int comm_timeout_s = 1800;     ///< longest wait for one pipeline transfer before the job ends; 0 = none
  int preempt_grace_s = 10;      ///< after SIGTERM/SIGUSR1, longest run to a preemption check before exit 3; 0 = none
  std::string output_dir;       ///< required
  int threads = 0;              ///< intra-op threads per rank; 0 = cores / ranks on the node
  uint64_t seed = 0;            ///< seed for learning (incoherence signs, tie breaks)

  std::string source_file;      ///< the YAML file it came from (not a key)
};

/// Loads FILE, applies each "key.path=value" override in order, validates
/// everything and resolves defaults. Throws UsageError naming file/line/key.
Config load_config(const std::string& file, const std::vector<std::string>& overrides = {});

/// Parses YAML text (used by tests; `origin` names it in messages).
Config parse_config(const std::string& yaml_text, const std::string& origin,
                    const std::vector<std::string>& overrides = {});

/// Every key with its resolved value (what report.json and checkpoints record).
nlohmann::json config_to_json(const Config& cfg);

/// The subset of keys that change the quantized result (model path excluded:
/// the model is identified by its tensor checksums). Used for resume hashing.
nlohmann::json quant_config_to_json(const Config& cfg);

}  // namespace glvq
