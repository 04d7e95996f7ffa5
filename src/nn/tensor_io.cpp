#include "nn/tensor_io.h"

#include "common/error.h"

#include <fmt/ranges.h>

#include <cstdint>
#include <cstring>

namespace glvq {

at::ScalarType scalar_type_of(DType t) {
  switch (t) {
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::F64: return at::kDouble;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
  }
  GLVQ_ASSERT(false && "DType outside the enum");
  return at::kFloat;
}

DType dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kDouble: return DType::F64;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    case at::kShort: return DType::I16;
    case at::kChar: return DType::I8;
    case at::kByte: return DType::U8;
    case at::kBool: return DType::BOOL;
    default: break;
  }
  GLVQ_FAIL("tensors of dtype {} cannot be stored (glvq stores u8/i8/i16/i32/i64/f16/bf16/f32/f64/bool)",
            c10::toString(t));
}

void check_shape(const TensorView& v, std::vector<int64_t> expected) {
  GLVQ_CHECK(v.shape == expected, "{}: tensor {} has shape [{}], expected [{}] from config.json",
             v.file, v.name, fmt::join(v.shape, ", "), fmt::join(expected, ", "));
}

at::Tensor to_float_tensor(const TensorView& v, const at::Device& device) {
  GLVQ_CHECK(v.dtype == DType::F32 || v.dtype == DType::F16 || v.dtype == DType::BF16,
             "{}: tensor {} has dtype {}; glvq reads F32, F16 and BF16 weights", v.file, v.name,
             dtype_name(v.dtype));
  const auto opts = at::TensorOptions().dtype(scalar_type_of(v.dtype));
  at::Tensor src;
  if (reinterpret_cast<uintptr_t>(v.data) % dtype_size(v.dtype) != 0) {
    // The format does not align tensor data (an F32 tensor after an odd number of BF16
    // values is legal), and LibTorch's kernels may assume element-aligned pointers.
    src = at::empty(v.shape, opts);
    std::memcpy(src.data_ptr(), v.data, v.nbytes);
  } else {
    // from_blob does not own the mapping; the copy below detaches from it.
    src = at::from_blob(const_cast<void*>(v.data), v.shape, opts);
  }
  at::Tensor out = src.to(device, at::kFloat, /*non_blocking=*/false, /*copy=*/true);
  GLVQ_CHECK(at::isfinite(out).all().item<bool>(),
             "{}: tensor {} contains NaN or Inf values; the checkpoint is corrupt or was saved "
             "after a diverged run", v.file, v.name);
  return out;
}

}  // namespace glvq
