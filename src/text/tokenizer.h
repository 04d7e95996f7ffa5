#pragma once
/// sentencepiece tokenizer (tokenizer.model of a Llama directory), implemented in glvq
/// (text/spm_*.cpp, bpe_encode.cpp): libsentencepiece's protobuf-lite cannot share a
/// process with LibTorch's libprotobuf. libsentencepiece is the reference in the tests.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace glvq {

struct SpmModel;

class Tokenizer {
 public:
  /// Loads PATH; throws glvq::Error naming it when missing or corrupt, or when it is not a
  /// BPE model with the identity normalizer (e.g. a unigram model).
  explicit Tokenizer(const std::string& path);
  ~Tokenizer();
  /// Ids without BOS/EOS, identical to SentencePieceProcessor::Encode.
  std::vector<int32_t> encode(const std::string& text) const;
  /// Identical to SentencePieceProcessor::Decode; throws for an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids) const;
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;

 private:
  std::unique_ptr<const SpmModel> model_;
  int32_t bos_id_ = -1, eos_id_ = -1;
};

/// The evaluation protocol (reference.json): split TEXT on "\n\n", encode every
/// piece without BOS, join them with the ids of encode("\n\n").
std::vector<int32_t> tokenize_corpus(const Tokenizer& tok, const std::string& text);

/// Reads a whole text file; throws naming the file when missing or empty.
std::string read_text_file(const std::string& path);

}  // namespace glvq
