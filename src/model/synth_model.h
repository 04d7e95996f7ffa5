#pragma once
/// A Llama-shaped Hugging Face model directory with random weights that look
/// like a trained model's where quantization cares (docs/SYNTH.md): per-row
/// and per-column scale spread, a few outlier input channels shared by every
/// layer reading the residual stream, heavy tails, norms near 1. For time,
/// memory and correctness at real shapes; its perplexity means nothing.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace glvq {

struct SynthShape {
  int hidden = 8192;
  int intermediate = 28672;
  int heads = 64;
  int kv_heads = 8;
  int vocab = 32000;
  int blocks = 2;
  int max_positions = 4096;
  double rope_theta = 10000;
  double rms_eps = 1e-5;
};

/// Llama-2-70B's shape with K blocks.
SynthShape synth_llama2_70b(int blocks);

/// The names synth_preset knows ("llama2-70b", "llama2-7b").
std::vector<std::string> synth_preset_names();

/// The shape of preset NAME with K blocks; throws UsageError listing the
/// presets for an unknown name.
SynthShape synth_preset(const std::string& name, int blocks);

struct SynthOptions {
  SynthShape shape;
  uint64_t seed = 0;
  std::string tokenizer_from = "models/tiny-llama";  ///< tokenizer.model (+ tokenizer_config.json) copied from here
  uint64_t shard_bytes = 5000000000ull;             ///< weight bytes per shard (at least one tensor each)
  double outlier_fraction = 0.005;                  ///< of the hidden channels
  int threads = 0;                                  ///< 0 = all cores
  bool overwrite = false;                           ///< replace an existing OUT
};

struct SynthTensor {
  std::string name;
  std::vector<int64_t> shape;
};

/// The tensors of a Llama model of SHAPE in file order (embedding, blocks, norm, lm_head).
std::vector<SynthTensor> synth_tensor_list(const SynthShape& shape);

/// The hidden channels that are outliers for SEED (sorted), as generated.
std::vector<int> synth_outlier_channels(const SynthShape& shape, uint64_t seed, double fraction);

/// Writes config.json, model-XXXXX-of-YYYYY.safetensors (bf16),
/// model.safetensors.index.json and the tokenizer into a temporary directory
/// beside OUT, then renames it to OUT. PROGRESS (may be empty) gets bytes done
/// and total. Throws glvq::Error naming the path or option at fault.
void synth_write_model(const std::string& out, const SynthOptions& opt,
                       const std::function<void(uint64_t done, uint64_t total)>& progress = {});

}  // namespace glvq
