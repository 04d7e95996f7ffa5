// libFuzzer target: a safetensors file image. Either it is refused with glvq::Error,
// or every tensor view lies inside the image and has shape x dtype == bytes.
#include "common/error.h"
#include "model/safetensors.h"

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::shared_ptr<glvq::SafetensorsFile> f;
  try {
    f = glvq::SafetensorsFile::parse(data, size, "fuzz.safetensors");
  } catch (const glvq::Error&) {
    return 0;  // refused with a message: the expected outcome for most inputs
  }
  for (const std::string& name : f->names()) {
    const glvq::TensorView& v = f->get(name);
    const auto* p = static_cast<const uint8_t*>(v.data);
    if (p < data || v.nbytes > size || p - data > static_cast<std::ptrdiff_t>(size - v.nbytes)) std::abort();
    if (static_cast<uint64_t>(v.numel()) * glvq::dtype_size(v.dtype) != v.nbytes) std::abort();
    // Read every byte, so that ASan sees a view that leaves the buffer.
    unsigned sum = 0;
    for (size_t i = 0; i < v.nbytes; ++i) sum += p[i];
    volatile unsigned sink = sum;
    (void)sink;
  }
  return 0;
}
