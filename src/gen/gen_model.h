#pragma once
/// What glvq-generate and glvq-bench run: a checkpoint (model.glvq.h5) with the
/// parts it does not hold (the tokenizer, and any unquantized tensor it lacks)
/// from the model directory recorded in it (config model.path) or given.
/// Everything is checked at load, so a generation never starts on a model that
/// cannot finish: every layer present with its model shape, the directory's
/// config.json agreeing with the checkpoint's in every shape field.
#include "ckpt/checkpoint.h"
#include "model/llama_config.h"
#include "model/model_files.h"
#include "nn/llama.h"
#include "text/tokenizer.h"

#include <ATen/ATen.h>

#include <memory>
#include <string>

namespace glvq {

struct GenModelOptions {
  std::string model_dir;   ///< empty: the model.path recorded in the checkpoint's config attribute
  bool tokenizer = true;   ///< false: do not load tokenizer.model (benchmarks feed token ids)
};

class GenModel {
 public:
  /// Opens CHECKPOINT and the model directory; throws glvq::Error naming the
  /// file, directory, layer or field that is missing or does not match.
  GenModel(const std::string& checkpoint, const GenModelOptions& opt = {});
  ~GenModel();

  const std::string& checkpoint() const { return checkpoint_; }
  const std::string& model_dir() const { return model_dir_; }
  const LlamaConfig& config() const { return cfg_; }
  /// The tokenizer (GenModelOptions::tokenizer); throws when it was not loaded.
  const Tokenizer& tokenizer() const;
  bool has_tokenizer() const { return tok_ != nullptr; }

  /// Quantized linear L of block B as stored (read from the file on each call).
  QuantizedLinear layer(int block, Linear l) const;
  /// An unquantized tensor as fp32 on the CPU, from the checkpoint or else the
  /// model directory, shape-checked against SHAPE.
  at::Tensor tensor(const std::string& name, const std::vector<int64_t>& shape) const;
  /// lm_head.weight, or the embedding when the model ties them.
  at::Tensor lm_head() const;

  /// The checkpoint's bits per weight over the quantized linears, its method, file size.
  double bits_per_weight() const { return bits_per_weight_; }
  const std::string& method() const { return method_; }
  int64_t file_bytes() const { return file_bytes_; }
  /// Parameters: sum of out*in over the linears + the unquantized tensors' elements.
  int64_t params() const { return params_; }

 private:
  std::string checkpoint_, model_dir_, method_;
  LlamaConfig cfg_;
  std::unique_ptr<CheckpointReader> ck_;
  /// The directory's weights, mapped only when the checkpoint lacks a tensor.
  mutable std::unique_ptr<ModelFiles> files_;
  ModelFiles& files() const;
  std::unique_ptr<Tokenizer> tok_;
  double bits_per_weight_ = 0;
  int64_t file_bytes_ = 0, params_ = 0;
};

}  // namespace glvq
