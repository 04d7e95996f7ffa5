#pragma once
/// sentencepiece tokenizer (tokenizer.model of a Llama directory).
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece { class SentencePieceProcessor; }

namespace glvq {

class Tokenizer {
 public:
  /// Loads PATH; throws glvq::Error naming it when missing or corrupt.
  explicit Tokenizer(const std::string& path);
  ~Tokenizer();
  /// Ids without BOS/EOS.
  std::vector<int32_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int32_t>& ids) const;
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

/// The evaluation protocol (reference.json): split TEXT on "\n\n", encode every
/// piece without BOS, join them with the ids of encode("\n\n").
std::vector<int32_t> tokenize_corpus(const Tokenizer& tok, const std::string& text);

/// Reads a whole text file; throws naming the file when missing or empty.
std::string read_text_file(const std::string& path);

}  // namespace glvq
