#include "text/tokenizer.h"

#include <sentencepiece_processor.h>

#include <cerrno>
#include <cstring>
#include <sys/stat.h>

#include "common/error.h"
#include "common/fs_util.h"

namespace glvq {

Tokenizer::Tokenizer(const std::string& path) : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  struct stat st;
  GLVQ_CHECK(::stat(path.c_str(), &st) == 0, "cannot open tokenizer {}: {} (a Llama model directory holds tokenizer.model)",
             path, std::strerror(errno));
  GLVQ_CHECK(S_ISREG(st.st_mode), "tokenizer {} is not a regular file", path);
  const auto status = sp_->Load(path);
  GLVQ_CHECK(status.ok(), "cannot load tokenizer {}: not a valid sentencepiece model ({})", path,
             status.ToString());
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  GLVQ_CHECK(status.ok(), "sentencepiece encode failed: {}", status.ToString());
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  const std::vector<int> v(ids.begin(), ids.end());
  std::string out;
  const auto status = sp_->Decode(v, &out);
  GLVQ_CHECK(status.ok(), "sentencepiece decode failed: {}", status.ToString());
  return out;
}

int Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int Tokenizer::bos_id() const { return sp_->bos_id(); }
int Tokenizer::eos_id() const { return sp_->eos_id(); }

std::vector<int32_t> tokenize_corpus(const Tokenizer& tok, const std::string& text) {
  // Pieces are encoded one by one (not the whole text at once) because that is how the
  // reference perplexities were measured: the separator is always encode("\n\n") and each
  // piece starts with sentencepiece's dummy prefix, which a single encode would not give.
  const std::vector<int32_t> sep = tok.encode("\n\n");
  const std::string delim = "\n\n";
  std::vector<int32_t> out;
  out.reserve(text.size() / 2);
  size_t begin = 0;
  while (true) {
    const size_t pos = text.find(delim, begin);
    const size_t end = pos == std::string::npos ? text.size() : pos;
    const std::vector<int32_t> ids = tok.encode(text.substr(begin, end - begin));
    out.insert(out.end(), ids.begin(), ids.end());
    if (pos == std::string::npos) break;
    out.insert(out.end(), sep.begin(), sep.end());
    begin = pos + delim.size();
  }
  return out;
}

std::string read_text_file(const std::string& path) {
  std::string text = read_file(path);
  GLVQ_CHECK(!text.empty(), "text file {} is empty", path);
  return text;
}

}  // namespace glvq
