#pragma once
/// A model.glvq.h5 of random valid GLVQ codes at any Llama shape, for speed
/// measurements only (glvq-bench on 7B/70B shapes without quantizing them):
/// every layer is a GLVQ layer of the code asked (box or shaped; d, group size,
/// bits as asked, mu = 0, incoherence signs on, G near the identity, scales that
/// give weights of rms ~0.02), the embedding and lm_head random fp16, the norms
/// ones. Its text is noise: never use it for quality.
#include "model/synth_model.h"

#include <cstdint>
#include <functional>
#include <string>

namespace glvq {

struct SynthCheckpointOptions {
  SynthShape shape;  ///< blocks = the model's layer count
  int bits = 2;      ///< code bits per weight (1..8)
  int dim = 8;
  int group_size = 128;
  bool shaped = false;  ///< the shaped code (quant/glvq_codebook.h) instead of the box code
  uint64_t seed = 0;
};

/// Writes PATH atomically (CheckpointWriter); PROGRESS (may be empty) gets layers done and total.
void write_synth_checkpoint(const std::string& path, const SynthCheckpointOptions& opt,
                            const std::function<void(int, int)>& progress);

}  // namespace glvq
