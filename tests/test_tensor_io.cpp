// Mapped safetensors tensors into LibTorch (nn/tensor_io): exact values whatever the
// alignment of the data in the file, and refusal of non-finite weights naming the tensor.
#include "common/error.h"
#include "model/safetensors.h"
#include "nn/tensor_io.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace glvq {
namespace {

void put(std::string* s, const void* p, size_t n) { s->append(static_cast<const char*>(p), n); }

/// A safetensors image whose data section is 8-byte aligned and holds, in order:
/// a: BF16 [3] at 0, c: U8 [1] at 6, b: F32 [5] at 7 (misaligned), d: F16 [2] at 27 (odd).
std::string image(const float* b_values, uint16_t d0 = 0x3E00 /* 1.5 */) {
  std::string header =
      R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},)"
      R"("c":{"dtype":"U8","shape":[1],"data_offsets":[6,7]},)"
      R"("b":{"dtype":"F32","shape":[5],"data_offsets":[7,27]},)"
      R"("d":{"dtype":"F16","shape":[2],"data_offsets":[27,31]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out;
  const uint64_t n = header.size();
  put(&out, &n, 8);  // little-endian hosts only, as the rest of glvq
  out += header;
  const uint16_t a[3] = {0x3F80, 0xC000, 0x3F00};  // bf16 1, -2, 0.5
  put(&out, a, sizeof a);
  out += '\x7f';
  put(&out, b_values, 5 * sizeof(float));
  const uint16_t d[2] = {d0, 0xB400};  // f16 1.5 (by default), -0.25
  put(&out, d, sizeof d);
  return out;
}

std::vector<float> values(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

TEST(TensorIo, MisalignedDataIsReadExactly) {
  const float b[5] = {0.1f, -3.25f, 1e-30f, 65504.0f, -0.0f};
  // Keep the image at an 8-aligned address, so that the offsets alone decide the alignment.
  const std::string bytes = image(b);
  std::vector<uint64_t> storage((bytes.size() + 7) / 8);
  std::memcpy(storage.data(), bytes.data(), bytes.size());
  auto f = SafetensorsFile::parse(storage.data(), bytes.size(), "mem.safetensors");
  ASSERT_NE(reinterpret_cast<uintptr_t>(f->get("b").data) % 4, 0u);
  ASSERT_NE(reinterpret_cast<uintptr_t>(f->get("d").data) % 2, 0u);

  EXPECT_EQ(values(to_float_tensor(f->get("a"))), (std::vector<float>{1.0f, -2.0f, 0.5f}));
  const std::vector<float> got = values(to_float_tensor(f->get("b")));
  ASSERT_EQ(got.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(std::memcmp(&got[i], &b[i], 4), 0) << "element " << i;
  EXPECT_EQ(values(to_float_tensor(f->get("d"))), (std::vector<float>{1.5f, -0.25f}));
}

TEST(TensorIo, NonFiniteWeightsAreRefusedNamingTheTensor) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (float bad : {inf, -inf, nan}) {
    const float b[5] = {1, 2, bad, 4, 5};
    const std::string bytes = image(b);
    auto f = SafetensorsFile::parse(bytes.data(), bytes.size(), "mem.safetensors");
    try {
      to_float_tensor(f->get("b"));
      ADD_FAILURE() << "a " << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("mem.safetensors: tensor b contains NaN or Inf"), std::string::npos) << e.message();
    }
  }
  // Half precision: +Inf (0x7C00) in F16.
  const float ok[5] = {1, 2, 3, 4, 5};
  const std::string bytes = image(ok, 0x7C00);
  auto f = SafetensorsFile::parse(bytes.data(), bytes.size(), "mem.safetensors");
  EXPECT_THROW(to_float_tensor(f->get("d")), Error);
  EXPECT_NO_THROW(to_float_tensor(f->get("b")));
}

}  // namespace
}  // namespace glvq
