#pragma once
/// glvq-export: a checkpoint as a plain Hugging Face model directory
/// (dequantized weights in safetensors, config.json, tokenizer files) that
/// transformers, or glvq-worker with quant.method none, loads like any model.
#include <cstdint>
#include <string>
#include <vector>

namespace glvq {

struct ExportOptions {
  /// Directory to copy the tokenizer files from; empty: the model.path recorded
  /// in the checkpoint's config attribute.
  std::string tokenizer_dir;
  /// Above this many bytes of weights, write model-XXXXX-of-YYYYY.safetensors
  /// shards with model.safetensors.index.json (HF's default limit, "5GB").
  uint64_t max_shard_bytes = 5'000'000'000ULL;
};

struct ExportResult {
  std::vector<std::string> files;     ///< written, relative to the directory
  std::vector<std::string> warnings;  ///< e.g. no tokenizer found
  std::string dtype;                  ///< safetensors dtype of the dequantized linears ("BF16", ...)
};

/// Writes DIR (created if needed) from the checkpoint FILE:
///  - model.safetensors (or shards + index; metadata format="pt"): each
///    quantized linear as dequantize(layer) converted to the model's dtype
///    (config.json's torch_dtype / dtype; else the embedding's dtype; else F32),
///    each unquantized tensor with its stored dtype and bytes;
///  - config.json: the model_config attribute verbatim;
///  - tokenizer.model, tokenizer.json, tokenizer_config.json,
///    special_tokens_map.json, added_tokens.json, generation_config.json where
///    they exist in the tokenizer directory (a warning when none of the
///    tokenizer files can be found).
/// A stale model.safetensors / index of the other layout is removed, since
/// loaders prefer one over the other. Throws glvq::Error naming FILE or DIR.
ExportResult export_checkpoint(const std::string& file, const std::string& dir, const ExportOptions& opt = {});

}  // namespace glvq
