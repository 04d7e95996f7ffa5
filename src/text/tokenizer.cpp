#include "text/tokenizer.h"

#include <cerrno>
#include <cstring>
#include <sys/stat.h>

#include "common/error.h"
#include "common/fs_util.h"
#include "text/spm_codec.h"
#include "text/spm_model.h"

namespace glvq {

Tokenizer::Tokenizer(const std::string& path) {
  struct stat st;
  GLVQ_CHECK(::stat(path.c_str(), &st) == 0, "cannot open tokenizer {}: {} (a Llama model directory holds tokenizer.model)",
             path, std::strerror(errno));
  GLVQ_CHECK(S_ISREG(st.st_mode), "tokenizer {} is not a regular file", path);
  auto model = std::make_unique<SpmModel>();
  spm_model_parse(read_file(path), path, model.get());
  // As SentencePieceProcessor::bos_id(): the id of bos_piece when it is a control piece, else -1.
  const auto control_id = [&](const std::string& piece) {
    const int32_t id = model->piece_to_id(piece);
    return model->type(id) == SpmPieceType::kControl ? id : -1;
  };
  bos_id_ = control_id(model->bos_piece);
  eos_id_ = control_id(model->eos_piece);
  model_ = std::move(model);
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
  return bpe_encode(*model_, spm_normalize(*model_, text));
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const { return spm_decode(*model_, ids); }

int Tokenizer::vocab_size() const { return static_cast<int>(model_->pieces.size()); }
int Tokenizer::bos_id() const { return bos_id_; }
int Tokenizer::eos_id() const { return eos_id_; }

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
