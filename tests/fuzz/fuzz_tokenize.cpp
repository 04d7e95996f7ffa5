// libFuzzer target: arbitrary bytes as text for the shipped tiny-llama tokenizer. Ids
// stay inside the vocabulary, decoding them succeeds, and valid UTF-8 text without
// whitespace runs survives encode + decode unchanged (sentencepiece's own property).
#include "common/error.h"
#include "text/spm_codec.h"
#include "text/tokenizer.h"

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

namespace {
const glvq::Tokenizer& tokenizer() {
  static const glvq::Tokenizer tok(GLVQ_SOURCE_DIR "/models/tiny-llama/tokenizer.model");
  return tok;
}

// True when TEXT is well-formed UTF-8 that normalisation leaves alone apart from the
// dummy prefix: no leading, trailing or repeated spaces, no NUL, and no U+2581 (the
// escaped space, which decodes to ' ' by design).
bool round_trips(const std::string& text) {
  if (text.empty() || text.front() == ' ' || text.back() == ' ') return false;
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '\0' || (text[i] == ' ' && i + 1 < text.size() && text[i + 1] == ' ')) return false;
    if (text.compare(i, 3, "\xE2\x96\x81") == 0) return false;
    const size_t n = glvq::spm_utf8_char_len(std::string_view(text).substr(i));
    if (n == 0) return false;
    i += n;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const glvq::Tokenizer& tok = tokenizer();
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<int32_t> ids = tok.encode(text);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) std::abort();
  const std::string back = tok.decode(ids);
  if (round_trips(text) && back != text) std::abort();
  return 0;
}
