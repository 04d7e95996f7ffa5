// safetensors reader/writer: exact round trips and a clear error for every
// kind of header corruption.
#include "model/safetensors.h"

#include "test_util.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>

namespace glvq {
namespace {

using test::expect_error;
using test::TempDir;

// Deterministic bytes from (seed, index).
std::string pattern_bytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

// A safetensors file laid out by hand: u64 LE header length, header, data.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

std::string write_raw(const TempDir& dir, const std::string& header, const std::string& data,
                      const std::string& name = "model-00002-of-00003.safetensors") {
  const std::string path = dir.file(name);
  test::write_bytes(path, raw_file(header, data));
  return path;
}

uint64_t header_len(const std::string& file_bytes) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file_bytes[i]);
  return n;
}

TEST(Safetensors, DTypeNamesAndSizes) {
  const struct {
    DType t;
    const char* name;
    size_t size;
  } cases[] = {{DType::F32, "F32", 4}, {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
               {DType::F64, "F64", 8}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
               {DType::I16, "I16", 2}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
               {DType::BOOL, "BOOL", 1}};
  for (const auto& c : cases) {
    EXPECT_EQ(dtype_name(c.t), c.name);
    EXPECT_EQ(dtype_size(c.t), c.size) << c.name;
    DType back = DType::F32;
    ASSERT_TRUE(parse_dtype(c.name, &back)) << c.name;
    EXPECT_EQ(back, c.t);
  }
  DType d;
  EXPECT_FALSE(parse_dtype("F8_E4M3", &d));
  EXPECT_FALSE(parse_dtype("bf16", &d));
  EXPECT_FALSE(parse_dtype("", &d));
}

TEST(Safetensors, RoundTripEveryDType) {
  TempDir dir;
  struct Case {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  // Odd byte counts (U8 [11], I8 [3,3]) put later tensors off 8-byte alignment.
  const std::vector<Case> cases = {
      {"t.f32", DType::F32, {3, 5}},   {"t.f16", DType::F16, {7}},      {"t.u8", DType::U8, {11}},
      {"t.bf16", DType::BF16, {2, 3, 4}}, {"t.f64", DType::F64, {1, 1}}, {"t.i8", DType::I8, {3, 3}},
      {"t.i64", DType::I64, {4}},      {"t.i32", DType::I32, {2, 2}},   {"t.i16", DType::I16, {5, 1}},
      {"t.bool", DType::BOOL, {6}},    {"t.scalar", DType::F32, {}},    {"t.empty", DType::BF16, {0, 4}},
  };
  std::vector<std::string> bytes;
  std::vector<TensorToWrite> tw;
  uint64_t total = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    int64_t n = 1;
    for (int64_t d : cases[i].shape) n *= d;
    std::string b = pattern_bytes(static_cast<size_t>(n) * dtype_size(cases[i].dtype), 100 + i);
    if (cases[i].dtype == DType::BOOL) {
      for (char& c : b) c = static_cast<char>(c & 1);
    }
    total += b.size();
    bytes.push_back(std::move(b));
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    tw.push_back({cases[i].name, cases[i].dtype, cases[i].shape, bytes[i].data()});
  }
  const std::string path = dir.file("model.safetensors");
  write_safetensors(path, tw, {{"format", "pt"}, {"producer", "glvq test"}});

  const std::string file = test::read_bytes(path);
  const uint64_t n = header_len(file);
  EXPECT_EQ(n % 8, 0u) << "data buffer should start 8-byte aligned";
  EXPECT_EQ(file.size(), 8 + n + total) << "no holes between tensors";
  // Tensors are laid out in the order given.
  EXPECT_EQ(file.substr(8 + n, bytes[0].size()), bytes[0]);
  EXPECT_EQ(file.substr(file.size() - bytes[10].size(), bytes[10].size()), bytes[10]);

  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->path(), path);
  EXPECT_EQ(f->names().size(), cases.size());
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("producer"), "glvq test");
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    ASSERT_TRUE(f->has(cases[i].name));
    const TensorView& v = f->get(cases[i].name);
    EXPECT_EQ(v.name, cases[i].name);
    EXPECT_EQ(v.file, path);
    EXPECT_EQ(v.dtype, cases[i].dtype);
    EXPECT_EQ(v.shape, cases[i].shape);
    EXPECT_EQ(v.nbytes, bytes[i].size());
    EXPECT_EQ(static_cast<size_t>(v.numel()) * dtype_size(v.dtype), v.nbytes);
    ASSERT_NE(v.data, nullptr);
    EXPECT_EQ(std::memcmp(v.data, bytes[i].data(), v.nbytes), 0);
  }
  EXPECT_EQ(f->get("t.scalar").numel(), 1);
  EXPECT_EQ(f->get("t.empty").numel(), 0);
  expect_error([&] { f->get("t.missing"); }, {path, "t.missing"});
}

TEST(Safetensors, ReadsHandWrittenFile) {
  TempDir dir;
  // Two I32 and one BF16 tensor, header padded with spaces, keys out of data order.
  const std::string header =
      R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
      R"("a":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}}    )";
  std::string data;
  const int32_t a[2] = {7, -3};
  data.append(reinterpret_cast<const char*>(a), 8);
  data.append("\x80\x3f\x00\x40", 4);  // bf16 1.0, 2.0
  const std::string path = write_raw(dir, header, data);
  auto f = SafetensorsFile::open(path);
  const TensorView& va = f->get("a");
  EXPECT_EQ(va.dtype, DType::I32);
  EXPECT_EQ(va.shape, std::vector<int64_t>{2});
  // The format does not align tensor data (here it starts at an odd offset): read with memcpy.
  int32_t got[2];
  std::memcpy(got, va.data, sizeof got);
  EXPECT_EQ(got[0], 7);
  EXPECT_EQ(got[1], -3);
  const TensorView& vb = f->get("b");
  EXPECT_EQ(vb.dtype, DType::BF16);
  EXPECT_EQ(vb.nbytes, 4u);
  EXPECT_EQ(std::memcmp(vb.data, "\x80\x3f\x00\x40", 4), 0);
  EXPECT_EQ(f->metadata().at("k"), "v");
}

TEST(Safetensors, WriteReplacesAtomicallyAndLeavesNoTempFile) {
  TempDir dir;
  const std::string path = dir.file("out.safetensors");
  const float one[2] = {1.f, 2.f};
  const float two[3] = {3.f, 4.f, 5.f};
  write_safetensors(path, {{"w", DType::F32, {2}, one}});
  write_safetensors(path, {{"w", DType::F32, {3}, two}});
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->get("w").shape, std::vector<int64_t>{3});
  EXPECT_EQ(static_cast<const float*>(f->get("w").data)[2], 5.f);
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename().string(), "out.safetensors");
  }
  EXPECT_EQ(entries, 1u);
}

TEST(Safetensors, WriteErrorsNameThePath) {
  TempDir dir;
  const float x[1] = {1.f};
  const std::string missing = dir.file("no/such/dir/out.safetensors");
  expect_error([&] { write_safetensors(missing, {{"w", DType::F32, {1}, x}}); }, {missing});
  const std::string path = dir.file("out.safetensors");
  expect_error([&] { write_safetensors(path, {{"w", DType::F32, {1}, x}, {"w", DType::F32, {1}, x}}); },
               {path, "w", "twice"});
  expect_error([&] { write_safetensors(path, {{"w", DType::F32, {-1}, x}}); }, {path, "w", "negative"});
}

TEST(Safetensors, TruncatedFileFails) {
  TempDir dir;
  const std::string a = pattern_bytes(4 * 6, 1), b = pattern_bytes(2 * 10, 2);
  const std::string good = dir.file("good.safetensors");
  write_safetensors(good, {{"model.layers.3.mlp.gate_proj.weight", DType::F32, {2, 3}, a.data()},
                           {"model.layers.3.mlp.up_proj.weight", DType::BF16, {10}, b.data()}});
  const std::string full = test::read_bytes(good);
  const uint64_t n = header_len(full);
  ASSERT_EQ(full.size(), 8 + n + a.size() + b.size());
  SafetensorsFile::open(good);  // the untruncated file is fine

  const std::string path = dir.file("model-00002-of-00003.safetensors");
  struct Cut {
    size_t size;
    std::string expect;  // besides the path
  };
  const std::vector<Cut> cuts = {
      {0, "empty"},
      {4, "truncated"},
      {7, "truncated"},
      {8, "header length"},
      {8 + n / 2, "header length"},
      {8 + n - 1, "header length"},
      {8 + n, "model.layers.3.mlp.gate_proj.weight"},  // data buffer gone: first tensor past end
      {8 + n + a.size() + 1, "model.layers.3.mlp.up_proj.weight"},
      {full.size() - 1, "model.layers.3.mlp.up_proj.weight"},
  };
  for (const Cut& c : cuts) {
    SCOPED_TRACE(c.size);
    test::write_bytes(path, full.substr(0, c.size));
    expect_error([&] { SafetensorsFile::open(path); }, {path, c.expect});
  }
  // Past-the-end data names the offsets, the file size and what to do.
  test::write_bytes(path, full.substr(0, full.size() - 1));
  expect_error([&] { SafetensorsFile::open(path); },
               {"run past the end", "truncated", "re-download"});
}

TEST(Safetensors, MissingFileFails) {
  TempDir dir;
  const std::string path = dir.file("nope.safetensors");
  expect_error([&] { SafetensorsFile::open(path); }, {path, "No such file"});
}

TEST(Safetensors, HeaderLengthTooBig) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  std::string bytes = raw_file("{}      ", "");
  bytes[0] = static_cast<char>(0x40);  // length 64 > 8 bytes available
  test::write_bytes(path, bytes);
  expect_error([&] { SafetensorsFile::open(path); }, {path, "header length 64", "past the end"});
  // A length near 2^64 must not wrap around.
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(0xff);
  test::write_bytes(path, bytes);
  expect_error([&] { SafetensorsFile::open(path); }, {path, "header length"});
}

TEST(Safetensors, HeaderNotJson) {
  TempDir dir;
  const std::string path = write_raw(dir, "{\"a\": {\"dtype\": ", "");
  expect_error([&] { SafetensorsFile::open(path); }, {path, "not valid JSON"});
}

TEST(Safetensors, HeaderNotObject) {
  TempDir dir;
  const std::string path = write_raw(dir, "[1, 2, 3]", "");
  expect_error([&] { SafetensorsFile::open(path); }, {path, "expected an object"});
}

TEST(Safetensors, EntryNotObject) {
  TempDir dir;
  const std::string path = write_raw(dir, R"({"w": [1, 2]})", "");
  expect_error([&] { SafetensorsFile::open(path); }, {path, "tensor w", "expected an object"});
}

TEST(Safetensors, EntryMissingField) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"dtype", R"({"w": {"shape": [2], "data_offsets": [0, 8]}})"},
      {"shape", R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})"},
      {"data_offsets", R"({"w": {"dtype": "F32", "shape": [2]}})"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.first);
    const std::string path = write_raw(dir, c.second, std::string(8, '\0'));
    expect_error([&] { SafetensorsFile::open(path); }, {path, "tensor w", "'" + c.first + "'"});
  }
}

TEST(Safetensors, FieldsOfWrongType) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"'dtype'", R"({"w": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})"},
      {"'shape'", R"({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})"},
      {"shape[0]", R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})"},
      {"'data_offsets'", R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})"},
      {"data_offsets[1]", R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, "8"]}})"},
      {"data_offsets[0]", R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [-1, 8]}})"},
      {"__metadata__", R"({"__metadata__": {"n": 3}})"},
      {"__metadata__", R"({"__metadata__": [1]})"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.second);
    const std::string path = write_raw(dir, c.second, std::string(8, '\0'));
    expect_error([&] { SafetensorsFile::open(path); }, {path, c.first});
  }
}

TEST(Safetensors, UnknownDType) {
  TempDir dir;
  const std::string path =
      write_raw(dir, R"({"model.norm.weight": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}})",
                std::string(4, '\0'));
  expect_error([&] { SafetensorsFile::open(path); },
               {path, "model.norm.weight", "F8_E4M3", "not supported"});
}

TEST(Safetensors, NegativeShape) {
  TempDir dir;
  const std::string path =
      write_raw(dir, R"({"w": {"dtype": "F32", "shape": [-2, 4], "data_offsets": [0, 32]}})",
                std::string(32, '\0'));
  expect_error([&] { SafetensorsFile::open(path); }, {path, "tensor w", "negative"});
}

TEST(Safetensors, OffsetsBeginAfterEnd) {
  TempDir dir;
  const std::string path =
      write_raw(dir, R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [8, 4]}})",
                std::string(8, '\0'));
  expect_error([&] { SafetensorsFile::open(path); }, {path, "tensor w", "begin > end"});
}

TEST(Safetensors, OffsetsPastEnd) {
  TempDir dir;
  const std::string path = write_raw(
      dir, R"({"model.layers.3.mlp.up_proj.weight": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
      std::string(16, '\0'));
  expect_error([&] { SafetensorsFile::open(path); },
               {path, "model.layers.3.mlp.up_proj.weight", "[8, 24)", "of which 16 are data", "truncated"});
}

TEST(Safetensors, ShapeDTypeMismatch) {
  TempDir dir;
  const std::string path =
      write_raw(dir, R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})",
                std::string(8, '\0'));
  expect_error([&] { SafetensorsFile::open(path); }, {path, "tensor w", "8 bytes", "needs 12 bytes"});
  // A shape whose byte count overflows 64 bits.
  const std::string path2 = write_raw(
      dir, R"({"w": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
      std::string(8, '\0'), "overflow.safetensors");
  expect_error([&] { SafetensorsFile::open(path2); }, {path2, "tensor w", "overflow"});
}

TEST(Safetensors, OverlappingTensors) {
  TempDir dir;
  const std::string path = write_raw(dir,
                                     R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                                     R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                                     std::string(12, '\0'));
  expect_error([&] { SafetensorsFile::open(path); }, {path, "tensor b", "overlap", "tensor a"});
  // Empty tensors take no bytes and may share an offset with anything.
  const std::string ok = write_raw(dir,
                                   R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                                   R"( "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                                   std::string(8, '\0'), "ok.safetensors");
  EXPECT_EQ(SafetensorsFile::open(ok)->names().size(), 2u);
}

}  // namespace
}  // namespace glvq

namespace glvq {
namespace {
// Found by fuzzing (tests/fuzz/fuzz_safetensors): a header number too large for
// a 64-bit integer made nlohmann::json throw out_of_range, which escaped as a crash.
TEST(SafetensorsFuzzRegressions, NumberOverflowInHeaderIsAnError) {
  std::string header = R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,314e496]}})";
  std::string file(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  file += header;
  test::expect_error([&] { SafetensorsFile::parse(file.data(), file.size(), "overflow.safetensors"); },
                     {"overflow.safetensors", "header"});
}
}  // namespace
}  // namespace glvq
