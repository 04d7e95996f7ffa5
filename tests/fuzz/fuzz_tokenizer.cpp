// libFuzzer target: a tokenizer.model (serialised sentencepiece ModelProto). Either it
// is refused with glvq::Error, or encoding text gives ids inside the vocabulary that
// decode without error.
#include "common/error.h"
#include "text/spm_codec.h"
#include "text/spm_model.h"

#include <cstdint>
#include <cstdlib>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  glvq::SpmModel model;
  try {
    glvq::spm_model_parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.model", &model);
  } catch (const glvq::Error&) {
    return 0;
  }
  for (const char* text : {"Hello world", "  two  spaces\n\nand a blank line", "caf\xc3\xa9 \xe2\x96\x81 \xff\xfe", ""}) {
    const std::vector<int32_t> ids = glvq::bpe_encode(model, glvq::spm_normalize(model, text));
    for (int32_t id : ids)
      if (id < 0 || static_cast<size_t>(id) >= model.pieces.size()) std::abort();
    (void)glvq::spm_decode(model, ids);
  }
  return 0;
}
