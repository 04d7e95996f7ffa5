#include "gen/gen_model.h"

#include "common/error.h"
#include "common/fs_util.h"
#include "nn/tensor_io.h"

#include <sys/stat.h>

#include <cmath>

namespace glvq {
namespace {

bool is_directory(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

/// The fields the forward depends on must agree; anything else (e.g.
/// transformers_version) may differ between the directory and the checkpoint.
void check_same_model(const LlamaConfig& ck, const LlamaConfig& dir, const std::string& ck_path,
                      const std::string& dir_path) {
  auto same = [&](const char* field, double a, double b) {
    GLVQ_CHECK(a == b, "{}/config.json does not match the checkpoint {}: {} is {} there but {} in the checkpoint "
               "(the model directory belongs to another model; give the right one with --model DIR)",
               dir_path, ck_path, field, b, a);
  };
  same("hidden_size", ck.hidden, dir.hidden);
  same("intermediate_size", ck.intermediate, dir.intermediate);
  same("num_hidden_layers", ck.n_layers, dir.n_layers);
  same("num_attention_heads", ck.n_heads, dir.n_heads);
  same("num_key_value_heads", ck.n_kv_heads, dir.n_kv_heads);
  same("head_dim", ck.head_dim, dir.head_dim);
  same("vocab_size", ck.vocab, dir.vocab);
  same("rope_theta", ck.rope_theta, dir.rope_theta);
  same("rms_norm_eps", ck.rms_eps, dir.rms_eps);
  same("tie_word_embeddings", ck.tie_word_embeddings, dir.tie_word_embeddings);
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

}  // namespace

GenModel::GenModel(const std::string& checkpoint, const GenModelOptions& opt) : checkpoint_(checkpoint) {
  ck_ = std::make_unique<CheckpointReader>(checkpoint);
  const nlohmann::json root = ck_->root_attrs();
  const std::string mc = ck_->root_attr_text("model_config");
  nlohmann::json mcj;
  try {
    mcj = nlohmann::json::parse(mc);
  } catch (const nlohmann::json::exception& e) {
    GLVQ_FAIL("{}: the model_config attribute is not valid JSON ({}): the checkpoint is damaged", checkpoint, e.what());
  }
  cfg_ = parse_llama_config(mcj, checkpoint + ": model_config");
  method_ = root.value("method", std::string());
  bits_per_weight_ = root.value("bits_per_weight", 0.0);
  {
    struct stat st {};
    if (::stat(checkpoint.c_str(), &st) == 0) file_bytes_ = st.st_size;
  }

  model_dir_ = opt.model_dir;
  if (model_dir_.empty()) {
    const nlohmann::json run = root.value("config", nlohmann::json::object());
    if (run.is_object() && run.contains("model") && run["model"].is_object() && run["model"].contains("path") &&
        run["model"]["path"].is_string())
      model_dir_ = run["model"]["path"].get<std::string>();
    // Without a tokenizer to read (benchmarks) a self-contained checkpoint needs no directory.
    GLVQ_CHECK(!model_dir_.empty() || !opt.tokenizer,
               "{} records no model directory (config model.path): give it with --model DIR", checkpoint);
    GLVQ_CHECK(model_dir_.empty() || is_directory(model_dir_), "the model directory {} recorded in {} does not exist "
               "(moved or deleted?): give it with --model DIR", model_dir_, checkpoint);
  } else {
    GLVQ_CHECK(is_directory(model_dir_), "the model directory {} (--model) does not exist", model_dir_);
  }
  if (!model_dir_.empty()) check_same_model(cfg_, load_llama_config(model_dir_), checkpoint, model_dir_);

  // Every linear, with the shape the forward needs: a checkpoint of another model fails here, not mid-generation.
  for (int b = 0; b < cfg_.n_layers; ++b)
    for (int l = 0; l < kNumLinears; ++l) {
      const std::string name = linear_tensor_name(b, static_cast<Linear>(l));
      GLVQ_CHECK(ck_->has_layer(name), "{} has no quantized layer {}: it is incomplete (run the gather stage again)",
                 checkpoint, name);
      const QuantizedLinear h = ck_->layer_header(name);
      const auto want = linear_weight_shape(cfg_, static_cast<Linear>(l));
      GLVQ_CHECK(h.out == want[0] && h.in == want[1], "{}: layer {} is [{}, {}] but the model needs {}: the "
                 "checkpoint is damaged", checkpoint, name, h.out, h.in, shape_text(want));
      params_ += h.out * h.in;
    }
  // The unquantized tensors: present (here or in the directory) with their shapes, read now.
  const std::vector<int64_t> hid = {cfg_.hidden}, emb = {cfg_.vocab, cfg_.hidden};
  params_ += tensor("model.embed_tokens.weight", emb).numel();
  for (int b = 0; b < cfg_.n_layers; ++b) {
    params_ += tensor(fmt::format("model.layers.{}.input_layernorm.weight", b), hid).numel();
    params_ += tensor(fmt::format("model.layers.{}.post_attention_layernorm.weight", b), hid).numel();
  }
  params_ += tensor("model.norm.weight", hid).numel();
  if (!cfg_.tie_word_embeddings && ck_->has_tensor("lm_head.weight")) params_ += lm_head().numel();

  if (opt.tokenizer) {
    const std::string tp = model_dir_ + "/tokenizer.model";
    GLVQ_CHECK(file_exists(tp), "the model directory {} has no tokenizer.model (glvq-generate needs the "
               "sentencepiece tokenizer of the model {} was made from)", model_dir_, checkpoint);
    tok_ = std::make_unique<Tokenizer>(tp);
    GLVQ_CHECK(tok_->vocab_size() <= cfg_.vocab, "{} has {} tokens but the model's vocabulary has {}: the tokenizer "
               "belongs to another model", tp, tok_->vocab_size(), cfg_.vocab);
  }
}

GenModel::~GenModel() = default;

const Tokenizer& GenModel::tokenizer() const {
  GLVQ_CHECK(tok_ != nullptr, "the model {} was opened without its tokenizer", checkpoint_);
  return *tok_;
}

QuantizedLinear GenModel::layer(int block, Linear l) const { return ck_->layer(linear_tensor_name(block, l)); }

at::Tensor GenModel::tensor(const std::string& name, const std::vector<int64_t>& shape) const {
  at::Tensor t;
  if (ck_->has_tensor(name)) {
    t = ck_->tensor(name);
    GLVQ_CHECK(t.sizes() == at::IntArrayRef(shape), "{}: tensor {} is {} but the model needs {}: the checkpoint is "
               "damaged", checkpoint_, name, shape_str(t), shape_text(shape));
    t = t.to(at::kFloat);
    GLVQ_CHECK(at::isfinite(t).all().item<bool>(), "{}: tensor {} holds NaN or Inf", checkpoint_, name);
    return t;
  }
  // Not in the checkpoint: the model directory's copy (mapped on first need).
  GLVQ_CHECK(files().has(name), "tensor {} is neither in {} nor in the model directory {}", name, checkpoint_,
             model_dir_);
  const TensorView& v = files().get(name);
  check_shape(v, shape);
  return to_float_tensor(v);
}

ModelFiles& GenModel::files() const {
  GLVQ_CHECK(!model_dir_.empty(), "{} lacks an unquantized tensor and records no model directory to read it from: "
             "give it with --model DIR", checkpoint_);
  if (!files_) files_ = std::make_unique<ModelFiles>(model_dir_);
  return *files_;
}

at::Tensor GenModel::lm_head() const {
  const std::vector<int64_t> emb = {cfg_.vocab, cfg_.hidden};
  // As load_head: a model without lm_head.weight uses the embedding.
  const bool own = !cfg_.tie_word_embeddings && (ck_->has_tensor("lm_head.weight") || files().has("lm_head.weight"));
  return tensor(own ? "lm_head.weight" : "model.embed_tokens.weight", emb);
}

}  // namespace glvq
